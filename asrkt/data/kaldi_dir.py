"""Kaldi data directories: ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` and friends.

Tables are ``key rest-of-line`` files, C-sorted by key, no duplicate keys, no whitespace in keys.
Reading checks that, and every error names the file and line. Writing is atomic (temporary name, then
rename) and always C-sorted, so a crash never leaves a half-written table.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.tables import c_sorted, read_table, write_table  # noqa: F401 (re-exported)

# Every table a data dir may hold, in the order they are written and validated.
TABLES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2dur", "feats.scp", "cmvn.scp",
          "utt2num_frames")


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, str]:
    spk2utt = defaultdict(list)
    for utt in c_sorted(utt2spk):
        spk2utt[utt2spk[utt]].append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utt.items()}


@dataclasses.dataclass
class DataDir:
    """All tables of one data directory; absent optional tables are None."""

    path: Path
    wav_scp: dict | None = None
    segments: dict | None = None
    text: dict | None = None
    utt2spk: dict | None = None
    spk2utt: dict | None = None
    utt2dur: dict | None = None
    feats_scp: dict | None = None
    cmvn_scp: dict | None = None
    utt2num_frames: dict | None = None

    @staticmethod
    def attr(table_name: str) -> str:
        return table_name.replace(".", "_")

    @classmethod
    def load(cls, path, check_sorted: bool = True) -> "DataDir":
        path = Path(path)
        if not path.is_dir():
            raise fail("data directory not found", path)
        d = cls(path=path)
        for name in TABLES:
            if (path / name).exists():
                setattr(d, cls.attr(name), read_table(path / name, check_sorted=check_sorted))
        return d

    def save(self, path=None) -> None:
        """Write every table that is set (spk2utt derived from utt2spk when missing)."""
        path = Path(path or self.path)
        path.mkdir(parents=True, exist_ok=True)
        if self.utt2spk is not None and self.spk2utt is None:
            self.spk2utt = spk2utt_from_utt2spk(self.utt2spk)
        for name in TABLES:
            table = getattr(self, self.attr(name))
            if table is not None:
                write_table(path / name, table)

    @property
    def utts(self) -> list[str]:
        """Utterance ids, from utt2spk (the table every valid data dir has)."""
        if self.utt2spk is None:
            raise AsrktError(f"{self.path}/utt2spk: missing")
        return c_sorted(self.utt2spk)


def write_data_dir(path, wav_scp: dict, text: dict | None, utt2spk: dict, **other_tables) -> DataDir:
    """Create a data dir from its tables (spk2utt is derived); returns the DataDir."""
    d = DataDir(path=Path(path), wav_scp=wav_scp, text=text, utt2spk=utt2spk,
                **{DataDir.attr(k): v for k, v in other_tables.items()})
    d.save()
    return d


def read_table_lenient(path) -> tuple[dict[str, str], list[str]]:
    """Read a table that may be unsorted or hold duplicates, as ``fix_data_dir`` must.

    Returns the table (first line of each key wins, in file order) and a list of what was skipped
    (``file:line: ...`` strings). Non-UTF-8 bytes still raise: no fix can guess the encoding.
    """
    path = Path(path)
    if not path.is_file():
        raise fail("file not found", path)
    table: dict[str, str] = {}
    skipped: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise fail(f"not valid UTF-8 ({e.reason} at byte {e.start}); convert the file to UTF-8 "
                           "(e.g. with iconv)", path, line=lineno) from None
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                skipped.append(f"{path}:{lineno}: empty line")
                continue
            if line[0].isspace():
                skipped.append(f"{path}:{lineno}: line starts with whitespace (empty key)")
                continue
            parts = line.split(maxsplit=1)
            key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            if key in table:
                skipped.append(f"{path}:{lineno}: duplicate key '{key}' (first line kept)")
                continue
            table[key] = value
    return table, skipped
