"""The plumbing of the one Kaldi I/O stack: kaldi-native-io (kni) tables with our pipes, temporary names and errors.

- Shell pipes (``ark:cmd |``, ``ark:| cmd``) are started here and kni reads or writes their ``/dev/fd/N``: a
  consumer that stops early kills the producer instead of waiting for it, and a failing command is an error
  with its exit status (kni's own pipes only warn).
- Archives are written under temporary names (:func:`asrkt.utils.atomic.tmp_name`), renamed on success, removed
  on failure; script (.scp) entries name the FINAL archive as an absolute path.
- kni reports problems as multi-line C++ warnings on fd 2 and exceptions that say little ("Error constructing
  TableReader"). :func:`kaldi_call` captures fd 2 around each kni call and turns its ``[E]``/``[W]`` lines into
  the reason of a one-line AsrktError naming the file and the utterance.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from asrkt.io.specifiers import RSpecifier, parse_wspecifier
from asrkt.utils.atomic import tmp_name
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


class KaldiFailure(Exception):
    """A kni call failed; ``str()`` is the one-line reason."""


_sink = {"pid": None, "file": None}
_sink_lock = threading.Lock()


def _reason(*texts: str) -> str:
    """The most useful line of kni's output: its first error, else its last warning, else the last line."""
    lines = [" ".join(ln.split()) for t in texts for ln in t.splitlines() if ln.strip()]
    for prefix in ("[E] ", "[W] "):
        found = [ln[len(prefix):] for ln in lines if ln.startswith(prefix) and "Exception caught" not in ln]
        if found:
            return found[0] if prefix == "[E] " else found[-1]
    return lines[-1] if lines else "unknown error"


def kaldi_call(fn, *args, warn: bool = True):
    """``fn(*args)`` with kni's fd-2 output captured; returns ``(result, captured text)``.

    A RuntimeError/ValueError of kni becomes :class:`KaldiFailure` with a one-line reason. With ``warn``, kni's
    warnings of a successful call are logged. (fd 2 is process-wide: calls are serialised, and anything another
    thread printed meanwhile is written out afterwards.)
    """
    with _sink_lock:
        if _sink["pid"] != os.getpid():  # a forked child (DataLoader worker) must not share the parent's file
            _sink["file"], _sink["pid"] = tempfile.TemporaryFile(), os.getpid()
        fd = _sink["file"].fileno()
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(fd, 2)
        error = None
        try:
            result = fn(*args)
        except (RuntimeError, ValueError) as e:
            result, error = None, e
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        size = os.lseek(fd, 0, os.SEEK_CUR)
        text = ""
        if size:
            text = os.pread(fd, size, 0).decode("utf-8", errors="replace")
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
    if error is not None:
        raise KaldiFailure(_reason(text, str(error))) from None
    if warn and text:
        for line in text.splitlines():
            if line.startswith(("[W] ", "[E] ")):
                logger.warning("kaldi-native-io: %s", line[4:].strip())
            elif not line.startswith("/project/"):  # not kni's source locations: someone else's output
                sys.stderr.write(line + "\n")
    return result, text


def safe(cls):
    """A kni table class whose ``close()`` returns kni's status and tolerates a failed constructor."""
    def close(self):
        impl = getattr(self, "_impl", None)
        return impl.close() if impl is not None and impl.is_open else True
    return type(cls.__name__, (cls,), {"close": close})


def _wait(proc, timeout=None) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# ----------------------------------------------------------------------------------------------------- reading
class Source:
    """What kni reads for an rspecifier target: a path, ``-`` (stdin) or the /dev/fd of ``cmd |`` run here."""

    def __init__(self, target: str, what: str = "archive"):
        self.target = target.strip()
        self.proc = None
        if self.target.endswith("|"):
            self.name = f"'{self.target[:-1].strip()} |'"
            self.proc = subprocess.Popen(self.target[:-1].strip(), shell=True, stdout=subprocess.PIPE)
            self.path = f"/dev/fd/{self.proc.stdout.fileno()}"
        elif self.target == "-":
            self.path, self.name = "-", "stdin"
        else:
            p = Path(self.target)
            if not p.exists():
                raise fail(f"{what} not found", p)
            if p.is_dir():
                raise fail(f"is a directory, expected a{'n' if what[0] in 'aeiou' else ''} {what}", p)
            self.name = self.path = self.target

    def read_all(self) -> bytes:
        if self.proc is not None:
            return self.proc.stdout.read()
        if self.target == "-":
            return sys.stdin.buffer.read()
        return Path(self.path).read_bytes()

    def finish(self, failed: bool = False) -> None:
        """After kni has closed: a command that failed is an error naming its exit status."""
        if self.proc is None:
            return
        self.proc.stdout.close()
        rc = _wait(self.proc, 5 if failed else None)
        if rc != 0:
            raise fail(f"command failed with exit status {rc}", path=self.name)

    def kill(self) -> None:
        """The consumer stopped early (or failed): do not wait for the producer."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.stdout.close()
            self.proc.wait()


def kaldi_rspecifier(spec: RSpecifier, path: str) -> str:
    opts = [spec.kind] + [o for o, on in (("o", spec.once), ("s", spec.sorted), ("cs", spec.called_sorted),
                                          ("p", spec.permissive), ("bg", spec.background)) if on]
    return f"{','.join(opts)}:{path}"


def iter_table(reader_cls, spec: RSpecifier, convert=None, what: str = "objects") -> Iterator[tuple[str, object]]:
    """``(key, value)`` over a kni sequential reader; a truncated or corrupt table, a duplicate key or a failing
    command is a one-line AsrktError naming the table and the last good utterance."""
    src = Source(spec.target, "archive" if spec.kind == "ark" else "script")
    reader, last, notes, reason, seen = None, None, "", None, set()
    try:
        try:
            reader, notes = kaldi_call(safe(reader_cls), kaldi_rspecifier(spec, src.path), warn=False)
            while not reader.done:
                try:
                    key = reader.key
                except UnicodeDecodeError:
                    raise KaldiFailure("a key that is not UTF-8 (a corrupt archive, or a table of another type?)")
                if key in seen:
                    raise fail(f"duplicate key in {'archive' if spec.kind == 'ark' else 'script'}", src.name, utt=key)
                seen.add(key)
                yield key, (convert(reader.value) if convert is not None else reader.value)
                last = key
                _, notes = kaldi_call(reader.next, warn=False)
            ok, more = kaldi_call(reader.close, warn=False)
            if not ok:
                reason = _reason(notes + more)
            elif spec.permissive and "[E]" in notes + more:
                logger.warning("%s: stopped after utterance '%s' (permissive read): %s", src.name, last,
                               _reason(notes + more))
        except KaldiFailure as e:
            reason = str(e)
            if reader is not None:
                with contextlib.suppress(KaldiFailure):
                    kaldi_call(reader.close, warn=False)
    except BaseException:  # the consumer stopped early, or a duplicate key
        src.kill()
        if reader is not None:
            with contextlib.suppress(KaldiFailure):
                kaldi_call(reader.close, warn=False)
        raise
    src.finish(failed=reason is not None)  # a failing command explains a short read best
    if reason is not None:
        at = f"after utterance '{last}'" if last is not None else "before the first utterance"
        raise fail(f"error reading {what} {at}: {reason} (truncated or corrupt archive?)", path=src.name)


# ----------------------------------------------------------------------------------------------------- writing
class Output:
    """Where one wspecifier target goes: a temporary name (renamed by :meth:`commit`, removed by :meth:`abort`),
    stdout, a device or FIFO written in place, or the /dev/fd of ``| cmd`` run here. kni writes to :attr:`path`."""

    def __init__(self, target: str):
        self.target = target.strip()
        self.final = self.tmp = self.proc = None
        self.name = self.target
        if self.target == "-":
            sys.stdout.flush()  # keep order with what Python printed before
            self.path = "-"
        elif self.target.startswith("|"):
            self.name = f"'{self.target}'"
            self.proc = subprocess.Popen(self.target[1:].strip(), shell=True, stdin=subprocess.PIPE)
            self.path = f"/dev/fd/{self.proc.stdin.fileno()}"
        else:
            p = Path(self.target)
            if p.exists() and not stat.S_ISREG(p.stat().st_mode):
                self.path = self.target  # /dev/null, a FIFO: renaming onto it would replace the node
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                self.final, self.tmp = p, tmp_name(p)
                self.path = str(self.tmp)

    def write_bytes(self, data: bytes) -> None:
        """For Python's own writes (the final script)."""
        if self.path == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            with open(self.path, "wb") as f:
                f.write(data)

    def dead_command(self) -> int | None:
        """After a failed write: the exit status of a ``| cmd`` that died, else None."""
        return None if self.proc is None else _wait(self.proc, 10)

    def commit(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
            rc = self.proc.wait()
            if rc != 0:
                raise fail(f"output command failed with exit status {rc}", path=self.name)
        if self.tmp is not None:
            os.replace(self.tmp, self.final)
            self.tmp = None

    def abort(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            _wait(self.proc, 10)
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None


def check_key(key, where, seen: set) -> None:
    """Keys are non-empty, whitespace-free strings, unique within one output."""
    if not isinstance(key, str) or not key or any(c.isspace() for c in key):
        raise fail(f"bad key {key!r}: keys must be non-empty strings without whitespace", path=where)
    if key in seen:
        raise fail("duplicate key: written twice to the same output", path=where, utt=key)
    seen.add(key)


class TableWriter:
    """Base of the writers: a kni table writer on temporary names, opened by :meth:`_open` at the first write.

    A context manager: a clean exit closes (renames into place; the script's entries then name the final archive
    by its absolute path), an exception aborts (removes the temporaries, an older output stays untouched), and a
    writer nobody closed is aborted when collected, never finalised.
    """

    _closed = True  # until __init__ has opened the outputs
    _default_cls = None  # the kni writer class of an empty output

    def __init__(self, wspecifier: str):
        self.spec = parse_wspecifier(wspecifier)
        self.num_written = 0
        self._keys: set[str] = set()
        self._writer = None
        self._scp = None
        self._ark = Output(self.spec.ark)
        try:
            if self.spec.scp is not None:
                self._scp = Output(self.spec.scp)
                if self._scp.tmp is None:  # stdout or a pipe: kni writes a private file, copied out on close
                    fd, tmp = tempfile.mkstemp(prefix=".scp.", suffix=".tmp", dir=Path(self._ark.path).parent)
                    os.close(fd)
                    self._scp_path = tmp
                else:
                    self._scp_path = self._scp.path
        except BaseException:
            self._ark.abort()
            raise
        self._closed = False

    def _open(self, writer_cls) -> None:
        opts = "ark" + (",t" if self.spec.text else "") + (",f" if self.spec.flush else "")
        spec = f"{opts},scp:{self._ark.path},{self._scp_path}" if self._scp else f"{opts}:{self._ark.path}"
        try:
            self._writer, _ = kaldi_call(safe(writer_cls), spec)
        except KaldiFailure as e:
            raise fail(f"cannot open for writing: {e}", path=self.spec.spec) from None

    def _put(self, key: str, *value) -> None:
        if self._closed:
            raise AsrktError(f"{self.spec.spec}: write after close")
        try:
            kaldi_call(self._writer.write, key, *value)
        except KaldiFailure as e:
            rc = self._ark.dead_command()
            if rc is not None:
                raise fail(f"output command exited (status {rc}) before all data was written",
                           path=self._ark.name) from None
            raise fail(f"cannot write: {e}", path=self._ark.name, utt=key) from None
        self.num_written += 1

    def close(self) -> None:
        """Finish: close kni's writer, rename the archive, then write the script naming the final archive."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is None:  # nothing written: still an (empty) archive
                self._open(self._default_cls)
            try:
                ok, why = kaldi_call(self._writer.close)[0], ""
            except KaldiFailure as e:
                ok, why = False, f": {e}"
            if not ok:
                raise fail(f"error closing the archive (disk full?){why}", path=self._ark.name)
            self._ark.commit()
            if self._scp is not None:
                self._write_final_scp()
        except BaseException:
            self._cleanup()
            raise

    def _write_final_scp(self) -> None:
        final_ark = os.path.abspath(self.spec.ark)
        lines = []
        with open(self._scp_path, encoding="utf-8") as f:
            for line in f:
                key, value = line.rstrip("\n").split(" ", 1)
                ark, offset = value.rsplit(":", 1)
                if ark != self._ark.path:  # would mean kni changed its script format
                    raise AsrktError(f"{self._scp_path}: unexpected script entry '{line.strip()}'")
                lines.append(f"{key} {final_ark}:{offset}\n")
        self._scp.write_bytes("".join(lines).encode("utf-8"))
        if self._scp.tmp is None:
            os.unlink(self._scp_path)
        self._scp.commit()

    def _cleanup(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(KaldiFailure):
                kaldi_call(self._writer.close, warn=False)
        self._ark.abort()
        if self._scp is not None:
            self._scp.abort()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._scp_path)

    def abort(self) -> None:
        """Give up: remove the temporary files (nothing under the final names changes)."""
        if self._closed:
            return
        self._closed = True
        self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        with contextlib.suppress(Exception):
            if not self._closed:
                self.abort()


@contextlib.contextmanager
def quiet_broken_pipe():
    """For tools writing to stdout: ``tool ... | head`` stops quietly with status 141 (128 + SIGPIPE, what the
    shell reports for Kaldi tools), instead of a traceback."""
    try:
        yield
    except BrokenPipeError:
        # Python would try to flush stdout again at exit and print another error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
