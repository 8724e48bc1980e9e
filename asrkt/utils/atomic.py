"""Write-to-temporary-then-rename, so that a crash never leaves a half-written output behind."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path

from asrkt.utils.errors import AsrktError

# Errors that mean the output itself could not be written (a full disk or quota, an I/O failure), and the
# messages torch's writers give for them (no errno: "basic_ios::clear: iostream error", "PytorchStreamWriter
# failed writing file ...: file write failed").
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
WRITE_FAILURE_TEXT = ("iostream error", "failed writing file", "file write failed")


def write_failure(e: BaseException) -> str | None:
    """Why ``e`` means the disk refused the write (a short reason), or None for any other error."""
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        return os.strerror(e.errno).lower()
    if isinstance(e, RuntimeError) and any(t in str(e) for t in WRITE_FAILURE_TEXT):
        return "the write failed (disk full?)"
    return None


# The temporary names of this package, with the pid of the process that made them: tmp_name's
# ".<name>.tmp<pid>[.<suffix>]", and ".<name>.old<pid>" of a folder being swapped out (asrkt.corpora.common).
TEMP_NAME = re.compile(r"^\..+\.(?:tmp|old)(\d+)(?:\..*)?$")
_swept: set[Path] = set()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (a zombie counts: it has not been reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    except OverflowError:  # not a pid at all
        return False
    return True


def remove_stale_temps(folder) -> list[Path]:
    """Remove the temporaries in ``folder`` whose process is gone (a writer killed with kill -9 or a power cut
    had no chance to); returns what was removed. One whose process still runs is left alone: it may be a
    concurrent writer. (The pid is looked up on this machine: a folder shared over the network with writers
    on other hosts should not be written to by two runs at once in any case.)"""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = TEMP_NAME.match(entry.name)
        if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another rerun removed it first
            continue
        removed.append(path)
    return removed


def tmp_name(path) -> Path:
    """The temporary name used while ``path`` is being written (same folder, so rename is atomic).

    The first call for a folder in a process also removes the temporaries killed processes left there
    (:func:`remove_stale_temps`), so that a rerun after a kill leaves none behind.
    """
    path = Path(path)
    folder = path.parent.absolute()
    if folder not in _swept:
        remove_stale_temps(folder)
        _swept.add(folder)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success rename it to ``path``, on error remove it.

    >>> with atomic_path("out.txt") as tmp:
    ...     Path(tmp).write_text("x")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        reason = write_failure(e)
        if reason:  # one line naming the file, not a traceback from deep inside a writer
            raise AsrktError(f"{path}: could not be written: {reason}; the previous {path.name}, if any, is "
                             "unchanged (free some space and rerun)") from e
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file for writing; it replaces ``path`` only when the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


def atomic_write_text(path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)
