"""Script (.scp) files: ``key value`` lines, where the value is ``ark:offset``, a file or a ``cmd |`` pipe.

Per-job shards (``post.JOB.scp``) are merged into one C-sorted script with :func:`merge_scp`, whose archive
paths are made absolute (so the script reads from any folder); a script is cut into contiguous, balanced pieces
with :func:`split_scp` (Kaldi's ``split_scp.pl``). Both write atomically.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.tables import read_table, write_table

_ENTRY = re.compile(r"^(?P<path>.*?)(?P<rest>(?::\d+)?(?:\[[^\]]*\])?)$")


def absolute_entry(value: str) -> str:
    """``a.ark:12[0:9]`` -> ``/cwd/a.ark:12[0:9]``; commands (``cmd |``) are left alone."""
    if value.rstrip().endswith("|"):
        return value
    m = _ENTRY.match(value)
    return os.path.abspath(m["path"]) + m["rest"] if m["path"] else value


def _check_values(table: dict[str, str], path) -> dict[str, str]:
    for lineno, (key, value) in enumerate(table.items(), 1):
        if not value:
            raise fail("missing value: expected 'KEY ARCHIVE:OFFSET' (or 'KEY FILE', 'KEY CMD |')", path,
                       utt=key, line=lineno)
    return table


def read_scp(path, check_sorted: bool = True) -> dict[str, str]:
    """Read a script file into an ordered dict ``key -> value``.

    Errors (AsrktError naming file:line): missing file, non-UTF-8, empty line, key without value, duplicate key,
    and with ``check_sorted`` a key out of C order.
    """
    return _check_values(read_table(path, check_sorted=check_sorted), path)


def parse_scp_lines(data: bytes, source: str) -> dict[str, str]:
    """Parse script text that does not come from a file (stdin, a pipe); same checks as :func:`read_scp`
    except the sort order."""
    table: dict[str, str] = {}
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            if raw == b"" and lineno == data.count(b"\n") + 1:
                break  # the empty string after the final newline
            raise fail("empty line", source, line=lineno)
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise fail(f"not valid UTF-8 ({e.reason} at byte {e.start})", source, line=lineno) from None
        if line[0].isspace():
            raise fail("line starts with whitespace (empty key)", source, line=lineno)
        parts = line.split(maxsplit=1)
        key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        if not value:
            raise fail("missing value: expected 'KEY ARCHIVE:OFFSET'", source, utt=key, line=lineno)
        if key in table:
            raise fail("duplicate key", source, utt=key, line=lineno)
        table[key] = value
    return table


def merge_scp(inputs, output) -> int:
    """Merge script shards into one C-sorted script (atomic) with absolute archive paths (relative ones are
    taken from the current folder, as Kaldi reads them); returns the number of entries.

    A key in two shards is an AsrktError naming both (a job ran twice, or the split overlapped).
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise AsrktError(f"{output}: merge_scp needs at least one input script")
    merged: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for shard in inputs:
        for key, value in read_scp(shard, check_sorted=False).items():
            if key in merged:
                raise fail(f"duplicate key: also in {origin[key]}", shard, utt=key)
            merged[key] = absolute_entry(value)
            origin[key] = shard
    write_table(output, merged)
    return len(merged)


def split_scp(input, outputs) -> list[Path]:
    """Cut a script into ``len(outputs)`` contiguous pieces whose sizes differ by at most one (input order kept;
    earlier pieces get the extra lines). Each output is written atomically. Returns the output paths."""
    outputs = [Path(p) for p in outputs]
    if not outputs:
        raise AsrktError(f"{input}: split_scp needs at least one output")
    if len(set(outputs)) != len(outputs):
        raise AsrktError(f"{input}: split_scp outputs must be distinct files")
    entries = list(read_scp(input, check_sorted=False).items())
    n, k = len(entries), len(outputs)
    if n < k:
        raise fail(f"cannot split {n} entries into {k} pieces (some would be empty); use fewer jobs", input)
    base, extra = divmod(n, k)
    start = 0
    for i, out in enumerate(outputs):
        size = base + (1 if i < extra else 0)
        write_table(out, dict(entries[start:start + size]), sort=False)
        start += size
    return outputs
