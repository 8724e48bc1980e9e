"""What every corpus preparation shares: replacing a data directory safely, and progress reporting."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from asrkt.data.kaldi_dir import DataDir, spk2utt_from_utt2spk, write_data_dir
from asrkt.utils.atomic import remove_stale_temps, tmp_name
from asrkt.utils.errors import fail

logger = logging.getLogger(__name__)

# Tables a corpus preparation writes; a data dir whose copies of these are identical is left alone.
PREP_TABLES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur")


def _looks_like_data_dir(path: Path) -> bool:
    return (path / "utt2spk").is_file() or (path / "wav.scp").is_file()


def swap_in_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` at ``dest``, replacing what was there (rename, then delete the old)."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old{os.getpid()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def replace_data_dir(path, wav_scp: dict, text: dict | None, utt2spk: dict, utt2dur: dict | None = None) -> bool:
    """Write a data directory for a corpus; return False when an identical one is already there.

    An identical data dir is left untouched, so markers and features later stages put in it survive a
    rerun. A different one is replaced as a whole (built under a temporary name, then renamed), so no
    stale ``feats.scp`` or ``.done`` marker outlives the data it described. A folder that is not a data
    dir is never deleted.
    """
    path = Path(path)
    remove_stale_temps(path.parent)  # what a killed preparation left
    tables = {"wav.scp": wav_scp, "text": text, "utt2spk": utt2spk, "utt2dur": utt2dur}
    if path.exists():
        if not path.is_dir() or (any(path.iterdir()) and not _looks_like_data_dir(path)):
            raise fail("exists and is not a Kaldi data directory (no utt2spk or wav.scp); refusing to "
                       "replace it, choose another --data-dir", path)
        if _same_tables(path, tables):
            logger.info("%s is up to date (%d utterances), left as it is", path, len(utt2spk))
            return False
    tmp = tmp_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_data_dir(tmp, wav_scp=wav_scp, text=text, utt2spk=utt2spk,
                       **({"utt2dur": utt2dur} if utt2dur is not None else {}))
        swap_in_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s (%d utterances, %d speakers)", path, len(utt2spk), len(set(utt2spk.values())))
    return True


def _same_tables(path: Path, tables: dict) -> bool:
    try:
        d = DataDir.load(path)
    except Exception:  # an unreadable old data dir is simply replaced
        return False
    for name, table in tables.items():
        have = getattr(d, DataDir.attr(name))
        want = None if table is None else {k: str(v) for k, v in table.items()}
        if have != want:
            return False
    return d.spk2utt == spk2utt_from_utt2spk({k: str(v) for k, v in tables["utt2spk"].items()})
