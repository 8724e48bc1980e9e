"""Data-dir tables by what they are keyed on, filtering a dir to a set of utterances, and writing a
whole dir atomically. Shared by ``fix_data_dir``, ``subset_data_dir`` and ``split_data_dir``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from asrkt.data.kaldi_dir import TABLES, c_sorted, read_table, read_table_lenient, spk2utt_from_utt2spk, \
    write_table
from asrkt.utils.atomic import atomic_path, tmp_name
from asrkt.utils.errors import fail

logger = logging.getLogger(__name__)

# Optional Kaldi tables beyond kaldi_dir.TABLES that tools such as lhotse's export write; they are
# filtered along with the rest so that a subset never keeps entries for utterances it dropped.
EXTRA_UTT_TABLES = ("utt2lang", "utt2gender", "utt2uniq", "utt2warp", "utt2category")
EXTRA_SPK_TABLES = ("spk2gender", "spk2warp")
EXTRA_REC_TABLES = ("reco2dur", "reco2file_and_channel")

UTT_TABLES = ("text", "utt2spk", "segments", "utt2dur", "feats.scp", "utt2num_frames") + EXTRA_UTT_TABLES
SPK_TABLES = ("spk2utt", "cmvn.scp") + EXTRA_SPK_TABLES
# wav.scp is keyed by recording; without segments a recording is an utterance.
REC_TABLES = ("wav.scp",) + EXTRA_REC_TABLES
ALL_TABLES = tuple(TABLES) + EXTRA_UTT_TABLES + EXTRA_SPK_TABLES + EXTRA_REC_TABLES

# Small non-table files describing the whole dir (feature config, frame shift): copied as they are.
METADATA_SUFFIXES = (".yaml", ".yml", ".json")
METADATA_NAMES = ("frame_shift",)


def load_tables(path, lenient: bool = False, exclude=()) -> dict[str, dict[str, str]]:
    """Every table present in ``path`` (name -> dict), except those in ``exclude``. ``lenient`` tolerates
    unsorted/duplicate lines (first wins) and logs what it skipped; otherwise :func:`read_table` checks apply."""
    path = Path(path)
    if not path.is_dir():
        raise fail("data directory not found", path)
    tables = {}
    for name in ALL_TABLES:
        if name in exclude or not (path / name).is_file():
            continue
        if lenient:
            tables[name], skipped = read_table_lenient(path / name)
            if skipped:
                logger.warning("%s: skipped %d line(s): %s", path / name, len(skipped), "; ".join(skipped[:3]))
        else:
            tables[name] = read_table(path / name)
    return tables


def recordings_of(tables: dict, utts) -> set[str]:
    """Recording ids (wav.scp keys) used by ``utts``: via segments when present, else the utts themselves."""
    if "segments" in tables:
        return {tables["segments"][u].split()[0] for u in utts if u in tables["segments"]}
    return set(utts)


def filter_tables(tables: dict, keep_utts) -> dict[str, dict[str, str]]:
    """Restrict every table to ``keep_utts`` (and their speakers and recordings); spk2utt is rebuilt."""
    keep = set(keep_utts)
    out = {}
    for name, table in tables.items():
        if name in UTT_TABLES:
            out[name] = {k: v for k, v in table.items() if k in keep}
    if "utt2spk" in out:
        out["spk2utt"] = spk2utt_from_utt2spk(out["utt2spk"])
        speakers = set(out["spk2utt"])
        for name in SPK_TABLES[1:]:
            if name in tables:
                out[name] = {k: v for k, v in tables[name].items() if k in speakers}
    recordings = recordings_of(tables, keep)
    for name in REC_TABLES:
        if name in tables:
            out[name] = {k: v for k, v in tables[name].items() if k in recordings}
    return out


def write_tables(dst, tables: dict) -> None:
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_table(dst / name, table)


def copy_metadata(src, dst) -> list[str]:
    """Copy the small whole-dir files (``*.yaml``, ``frame_shift``...) from ``src`` to ``dst``."""
    copied = []
    for f in sorted(Path(src).iterdir()):
        if f.is_file() and not f.name.startswith(".") and (f.suffix in METADATA_SUFFIXES
                                                           or f.name in METADATA_NAMES):
            with atomic_path(Path(dst) / f.name) as tmp:
                shutil.copy2(f, tmp)
            copied.append(f.name)
    return copied


def looks_like_data_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and (not any(path.iterdir()) or any((path / n).is_file() for n in
                                                              ("utt2spk", "wav.scp", "text", "spk2utt")))


@contextlib.contextmanager
def atomic_dir(dst, replace_check=looks_like_data_dir):
    """Yield a temporary folder beside ``dst``; on success it replaces ``dst`` (which, if it exists, must
    pass ``replace_check``, so that a mistyped path never deletes an unrelated folder); on error it is
    removed and ``dst`` is left as it was."""
    dst = Path(dst)
    if dst.exists() and not replace_check(dst):
        raise fail("exists and is not a Kaldi data directory; refusing to replace it", dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(dst)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        old = dst.with_name(f".{dst.name}.old{os.getpid()}")
        if dst.exists():
            os.replace(dst, old)
        os.replace(tmp, dst)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def show_ids(ids, n: int = 5) -> str:
    """``a, b, c ... (+7 more)`` for log lines."""
    ids = c_sorted(ids)
    more = f" ... (+{len(ids) - n} more)" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more
