"""Kaldi-style ``key value`` tables (scp files, data-dir tables): C-sorted, unique keys, errors naming file:line.

Here, not in :mod:`asrkt.data.kaldi_dir` (which re-exports them), so that :mod:`asrkt.io` can use them without
importing :mod:`asrkt.data`, which imports :mod:`asrkt.io`.
"""
from __future__ import annotations

from pathlib import Path

from asrkt.utils.atomic import atomic_open
from asrkt.utils.errors import fail


def c_sorted(keys):
    """Sort as Kaldi's ``LC_ALL=C sort`` does: by the UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def read_table(path, check_sorted: bool = True) -> dict[str, str]:
    """Read a ``key value...`` table into an ordered dict (value = rest of line, stripped).

    Raises AsrktError naming the file and line for non-UTF-8 bytes, empty keys, duplicates and
    (with ``check_sorted``) lines out of C order.
    """
    path = Path(path)
    if not path.is_file():
        raise fail("file not found", path)
    table: dict[str, str] = {}
    prev = None
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise fail(f"not valid UTF-8 ({e.reason} at byte {e.start})", path, line=lineno) from None
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                raise fail("empty line", path, line=lineno)
            if line[0].isspace():
                raise fail("line starts with whitespace (empty key)", path, line=lineno)
            parts = line.split(maxsplit=1)
            key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            if key in table:
                raise fail("duplicate key", path, utt=key, line=lineno)
            if check_sorted and prev is not None and key.encode() < prev.encode():
                raise fail(f"not C-sorted: '{key}' comes after '{prev}' (run fix_data_dir or "
                           "LC_ALL=C sort)", path, utt=key, line=lineno)
            table[key] = value
            prev = key
    return table


def write_table(path, table: dict, sort: bool = True) -> None:
    """Write ``table`` atomically, C-sorted by key. Values that are lists are joined with spaces."""
    keys = c_sorted(table) if sort else list(table)
    with atomic_open(path) as f:
        for key in keys:
            if not key or any(c.isspace() for c in key):
                raise fail("keys must be non-empty and contain no whitespace", path, utt=key)
            value = table[key]
            if isinstance(value, (list, tuple)):
                value = " ".join(map(str, value))
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")
