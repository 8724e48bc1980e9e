"""Write-to-temporary-then-rename, so that a crash never leaves a half-written output behind."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def tmp_name(path) -> Path:
    """The temporary name used while ``path`` is being written (same folder, so rename is atomic)."""
    path = Path(path)
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
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
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
