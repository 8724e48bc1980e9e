"""Byte streams behind rspecifier/wspecifier targets: files, ``-`` (stdin/stdout) and shell pipes.

Inputs check a pipe's exit status when they are exhausted. Outputs to a regular file go to a temporary name in the
same folder (``asrkt.utils.atomic.tmp_name``) and are renamed by ``commit()``, or removed by ``abort()``, so a
failed job never leaves a half-written archive under the final name and never clobbers an older good one.
"""
from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np

from asrkt.utils.atomic import tmp_name
from asrkt.utils.errors import AsrktError, fail


class CorruptData(Exception):
    """Raised by the readers for a short read or bad bytes; turned into an AsrktError naming file and key."""


class Input:
    """A binary input with a push-back buffer (pipes cannot seek) and a byte position for messages."""

    def __init__(self, f, name: str):
        self._f = f
        self._read1 = getattr(f, "read1", f.read)
        self._buf = b""
        self.name = name
        self.pos = 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at end of file."""
        out = b""
        if self._buf:
            out, self._buf = self._buf[:n], self._buf[n:]
        while len(out) < n:
            chunk = self._f.read(n - len(out))
            if not chunk:
                break
            out += chunk
        self.pos += len(out)
        return out

    def read_all(self) -> bytes:
        parts = [self._buf]
        self._buf = b""
        while True:
            chunk = self._f.read(65536)
            if not chunk:
                break
            parts.append(chunk)
        data = b"".join(parts)
        self.pos += len(data)
        return data

    def read_some(self, n: int = 65536) -> bytes:
        """What is available now (at least one byte unless at end of file): for text scanning."""
        if self._buf:
            out, self._buf = self._buf[:n], self._buf[n:]
        else:
            out = self._read1(n)
        self.pos += len(out)
        return out

    def unread(self, data: bytes) -> None:
        self._buf = data + self._buf
        self.pos -= len(data)

    def peek(self, n: int) -> bytes:
        data = self.read(n)
        self.unread(data)
        return data

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) < n:
            raise CorruptData(f"unexpected end of file while reading {what} at byte {self.pos} "
                              f"(needed {n} bytes, got {len(data)})")
        return data

    def read_array(self, dtype, shape, what: str) -> np.ndarray:
        """Read ``prod(shape)`` items into a new writable array (no extra copy through ``bytes``)."""
        dtype = np.dtype(dtype)
        out = np.empty(shape, dtype=dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        nbytes = len(view)
        got = 0
        if self._buf:
            take = self._buf[:nbytes]
            view[:len(take)] = take
            self._buf = self._buf[len(take):]
            got = len(take)
        readinto = getattr(self._f, "readinto", None)
        while got < nbytes:
            if readinto is not None:
                n = readinto(view[got:])
            else:
                chunk = self._f.read(nbytes - got)
                n = len(chunk)
                view[got:got + n] = chunk
            if not n:
                break
            got += n
        self.pos += got
        if got < nbytes:
            raise CorruptData(f"unexpected end of file while reading {what} at byte {self.pos} "
                              f"(needed {nbytes} bytes, got {got})")
        return out

    def seek(self, offset: int) -> None:
        self._f.seek(offset)
        self._buf = b""
        self.pos = offset


def _is_pipe_cmd(target: str) -> bool:
    return target.strip().endswith("|")


@contextlib.contextmanager
def open_input(target: str, what: str = "file"):
    """Yield an :class:`Input` for a path, ``-`` (stdin) or ``cmd |``; a failing command is an AsrktError."""
    target = target.strip()
    if target == "-":
        yield Input(sys.stdin.buffer, "stdin")
        return
    if _is_pipe_cmd(target):
        cmd = target[:-1].strip()
        name = f"'{cmd} |'"
        proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE)
        try:
            yield Input(proc.stdout, name)
        except AsrktError as e:
            # A failing command usually explains a short read better than the read error itself.
            proc.stdout.close()
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise e
            if rc != 0:
                raise fail(f"command failed with exit status {rc}", path=name) from e
            raise
        except BaseException:
            # The consumer stopped early (or crashed): do not wait for the producer to finish.
            proc.kill()
            proc.stdout.close()
            proc.wait()
            raise
        proc.stdout.close()
        rc = proc.wait()
        if rc != 0:
            raise fail(f"command failed with exit status {rc}", path=name)
        return
    path = Path(target)
    if not path.exists():
        raise fail(f"{what} not found", path)
    if path.is_dir():
        raise fail(f"is a directory, expected a {what}", path)
    with open(path, "rb") as f:
        yield Input(f, str(path))


@contextlib.contextmanager
def quiet_broken_pipe():
    """For tools writing to stdout: ``tool ... | head`` stops quietly with status 141 (128 + SIGPIPE, what the
    shell reports for Kaldi tools), instead of a traceback."""
    try:
        yield
    except BrokenPipeError:
        # Python would try to flush stdout again at exit and print another error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)


class Output:
    """A binary output for a path, ``-`` (stdout) or ``| cmd``.

    Regular files are written under a temporary name; :meth:`commit` renames, :meth:`abort` removes. With
    ``open_file=False`` nothing is opened: another writer (kaldi_native_io) writes to :attr:`write_target`.
    """

    def __init__(self, target: str, open_file: bool = True):
        self.target = target.strip()
        self.final_path: Path | None = None
        self.tmp_path: Path | None = None
        self._proc = None
        self._owned = True
        self.f = None
        if self.target == "-":
            self.write_target = "-"
            self._owned = False
            sys.stdout.flush()  # keep order with what Python printed before (also for a C++ writer)
            if open_file:
                self.f = sys.stdout.buffer
        elif self.target.startswith("|"):
            self.write_target = self.target
            if open_file:
                self._proc = subprocess.Popen(self.target[1:].strip(), shell=True, stdin=subprocess.PIPE)
                self.f = self._proc.stdin
        else:
            path = Path(self.target)
            if path.exists() and not stat.S_ISREG(path.stat().st_mode):
                # /dev/null, a FIFO...: renaming onto it would replace the device node, so write in place.
                self.write_target = str(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.final_path = path
                self.tmp_path = tmp_name(path)
                self.write_target = str(self.tmp_path)
            if open_file:
                try:
                    self.f = open(self.write_target, "wb")
                except OSError as e:
                    raise fail(f"cannot open for writing: {e.strerror}", path) from None

    @property
    def seekable_file(self) -> bool:
        return self._proc is None and self.target != "-"

    def write(self, data: bytes) -> None:
        """Write; a ``| cmd`` that died is an AsrktError with its exit status (stdout's BrokenPipeError
        is left to :func:`quiet_broken_pipe`)."""
        try:
            self.f.write(data)
        except BrokenPipeError:
            if self._proc is None:
                raise
            try:
                rc = self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                rc = self._proc.wait()
            raise fail(f"output command exited (status {rc}) before all data was written",
                       path=f"'{self.target}'") from None

    def _close_file(self) -> None:
        if self.f is not None:
            if self._owned:
                self.f.close()
            else:
                self.f.flush()
            self.f = None

    def commit(self) -> None:
        try:
            self._close_file()
        except BrokenPipeError:
            pass  # reported through the exit status below
        if self._proc is not None:
            rc = self._proc.wait()
            if rc != 0:
                raise fail(f"output command failed with exit status {rc}", path=f"'{self.target}'")
        if self.tmp_path is not None:
            os.replace(self.tmp_path, self.final_path)
            self.tmp_path = None

    def abort(self) -> None:
        try:
            self._close_file()
        except OSError:
            pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self.tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path)
            self.tmp_path = None


class TempOutputWriter:
    """Context-manager protocol of the archive writers, which write under temporary names: a clean exit
    closes (renames into place), an exception aborts (removes the temporaries), and a writer nobody closed
    is aborted when collected, never finalised. Subclasses set ``_closed`` first thing in ``__init__``
    and define ``close()`` and ``abort()``."""

    _closed = True  # until a subclass's __init__ has opened its outputs

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass
