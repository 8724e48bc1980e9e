"""Subsets and per-job splits of a Kaldi data dir (Kaldi's subset_data_dir.sh and split_data.sh).

Every table is filtered (feats.scp, cmvn.scp, utt2num_frames too), spk2utt is rebuilt, and the result is
built in a temporary folder, validated, then renamed into place.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path

from asrkt.data.kaldi_dir import c_sorted, read_table
from asrkt.data.tables import ALL_TABLES, atomic_dir, copy_metadata, filter_tables, load_tables, write_tables
from asrkt.data.validate import DataDirSummary, validate_data_dir
from asrkt.utils.errors import fail

logger = logging.getLogger(__name__)


def _validate_like_src(path, tables) -> DataDirSummary:
    return validate_data_dir(path, no_text="text" not in tables, no_wav="wav.scp" not in tables)


def _read_id_list(ids, what: str) -> list[tuple[str, str]]:
    """(id, where) pairs from a list of ids or from a file with one id per line (first field)."""
    if isinstance(ids, (str, os.PathLike)):
        path = Path(ids)
        if not path.is_file():
            raise fail(f"{what} list not found", path)
        out = []
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    fields = raw.decode("utf-8").split()
                except UnicodeDecodeError:
                    raise fail("not valid UTF-8", path, line=lineno) from None
                if fields:
                    out.append((fields[0], f"{path}:{lineno}"))
        return out
    return [(i, f"{what} list") for i in ids]


def _select_by_speaker_fraction(utt2spk: dict, fraction: float, seed: int) -> list[str]:
    """Shuffle the speakers with ``seed`` and take them in that order until ``fraction`` of the
    utterances is reached. The same seed gives nested subsets (25% within 50% within 100%)."""
    spk2utts: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        spk2utts.setdefault(spk, []).append(utt)
    order = c_sorted(spk2utts)
    random.Random(seed).shuffle(order)
    target = fraction * len(utt2spk)
    chosen, n = [], 0
    for spk in order:
        if n >= target - 1e-9:
            break
        chosen.append(spk)
        n += len(spk2utts[spk])
    logger.info("fraction %.3f of speakers by utterance (seed %d): %d of %d speakers, %d of %d utterances "
                "(%.1f%%)", fraction, seed, len(chosen), len(spk2utts), n, len(utt2spk), 100 * n / len(utt2spk))
    return [u for s in chosen for u in spk2utts[s]]


def subset_data_dir(src, dst, first: int | None = None, last: int | None = None, fraction: float | None = None,
                    speakers=None, utts=None, seed: int = 0) -> DataDirSummary:
    """Write a subset of data dir ``src`` to ``dst``; exactly one selector must be given.

    ``first`` / ``last``: the first or last N utterances in sorted order (Kaldi's --first / --last).
    ``fraction``: whole speakers, shuffled with ``seed``, until that fraction of the utterances is reached,
    so a smaller subset has fewer voices (not fewer utterances per voice).
    ``speakers`` / ``utts``: a list of ids, or a file with one id per line; unknown ids are an error.
    Returns the validated summary of ``dst``. ``dst`` is replaced as a whole, atomically.
    """
    src, dst = Path(src), Path(dst)
    given = {k: v for k, v in dict(first=first, last=last, fraction=fraction, speakers=speakers,
                                   utts=utts).items() if v is not None}
    if len(given) != 1:
        raise fail(f"give exactly one of first, last, fraction, speakers, utts (got {sorted(given) or 'none'})")
    if dst.resolve() == src.resolve() or src.resolve().is_relative_to(dst.resolve()):
        raise fail(f"the subset must go to a new directory, not over (or above) its source {src}", dst)
    tables = load_tables(src)
    _validate_like_src(src, tables)
    utt2spk = tables["utt2spk"]
    all_utts = list(utt2spk)  # C-sorted: read_table checked it
    total = len(all_utts)

    if first is not None or last is not None:
        n = first if first is not None else last
        if not isinstance(n, int) or n <= 0:
            raise fail(f"the number of utterances must be a positive integer, got {n!r}")
        if n > total:
            raise fail(f"cannot take {n} utterances: it has only {total}", src)
        keep = all_utts[:n] if first is not None else all_utts[total - n:]
    elif fraction is not None:
        if not 0 < fraction <= 1:
            raise fail(f"fraction must be in (0, 1], got {fraction}")
        keep = _select_by_speaker_fraction(utt2spk, fraction, seed)
    else:
        what, known = ("speaker", set(utt2spk.values())) if speakers is not None else ("utterance", set(utt2spk))
        ids = _read_id_list(speakers if speakers is not None else utts, what)
        unknown = [(i, w) for i, w in ids if i not in known]
        if unknown:
            table = "spk2utt" if what == "speaker" else "utt2spk"
            more = f" (and {len(unknown) - 1} more unknown ids)" if len(unknown) > 1 else ""
            raise fail(f"{what} '{unknown[0][0]}' is not in {src / table}{more}", unknown[0][1])
        wanted = {i for i, _ in ids}
        keep = [u for u in all_utts if (utt2spk[u] if what == "speaker" else u) in wanted]
    if not keep:
        raise fail("the subset is empty", src)

    with atomic_dir(dst) as tmp:
        sub = filter_tables(tables, keep)
        write_tables(tmp, sub)
        copy_metadata(src, tmp)
        summary = _validate_like_src(tmp, sub)
    summary.path = dst
    logger.info("subset %s -> %s: %d of %d utterances, %d speakers", src, dst, summary.num_utts, total,
                summary.num_speakers)
    return summary


def _contiguous_bounds(counts: list[int], nj: int) -> list[int]:
    """Split items with ``counts`` into ``nj`` non-empty contiguous groups with near-equal total counts.

    Returns nj+1 boundaries (group j is items bounds[j]:bounds[j+1]); each boundary is put where the
    running total is closest to its share j/nj of the whole, as Kaldi's split_scp.pl --utt2spk does.
    """
    cum = [0]
    for n in counts:
        cum.append(cum[-1] + n)
    total, m = cum[-1], len(counts)
    bounds = [0]
    for j in range(1, nj):
        target = total * j / nj
        lo, hi = bounds[-1] + 1, m - (nj - j)
        bounds.append(min(range(lo, hi + 1), key=lambda i: (abs(cum[i] - target), i)))
    bounds.append(m)
    return bounds


def _split_is_fresh(src: Path, dirs: list[Path]) -> bool:
    """True when every job dir holds the same tables as ``src`` and all its files are newer than every
    file of ``src`` (a table added or removed since, e.g. feats.scp set aside, also makes it stale)."""
    src_files = [f for f in src.iterdir() if f.is_file() and not f.name.startswith(".")]
    src_tables = {f.name for f in src_files if f.name in ALL_TABLES}
    for d in dirs:
        if not d.is_dir() or {f.name for f in d.iterdir() if f.name in ALL_TABLES} != src_tables:
            return False
    newest_src = max(f.stat().st_mtime_ns for f in src_files)
    oldest_split = min(f.stat().st_mtime_ns for d in dirs for f in d.iterdir() if f.is_file())
    return oldest_split >= newest_src


def split_data_dir(src, nj: int) -> list[Path]:
    """Split ``src`` into ``src/split{nj}/{1..nj}`` for parallel jobs; return the job dirs.

    Whole speakers go to each job (contiguous in sorted order, near-equal utterance counts), as Kaldi's
    split_data.sh. With fewer speakers than jobs it splits by utterance instead (a speaker may then span
    jobs; each job keeps that speaker's cmvn.scp line, so per-speaker CMVN stays right) and logs it.
    An existing split that is newer than every file of ``src`` is reused.
    """
    src = Path(src)
    if not isinstance(nj, int) or nj < 1:
        raise fail(f"number of jobs must be a positive integer, got {nj!r}")
    root = src / f"split{nj}"
    dirs = [root / str(j) for j in range(1, nj + 1)]
    if not (src / "utt2spk").is_file():
        raise fail("utt2spk: missing", src)
    if _split_is_fresh(src, dirs):
        logger.info("%s is newer than %s: reusing it", root, src)
        return dirs
    tables = load_tables(src)
    _validate_like_src(src, tables)
    utt2spk = tables["utt2spk"]
    utts = list(utt2spk)
    if nj > len(utts):
        raise fail(f"cannot split {len(utts)} utterances into {nj} jobs", src)
    spk2utts: dict[str, list[str]] = {}
    for u in utts:  # sorted by utterance, and validation checked that this also groups speakers in order
        spk2utts.setdefault(utt2spk[u], []).append(u)
    if len(spk2utts) >= nj:
        groups = list(spk2utts.values())
        bounds = _contiguous_bounds([len(g) for g in groups], nj)
        jobs = [[u for g in groups[bounds[j]:bounds[j + 1]] for u in g] for j in range(nj)]
    else:
        logger.warning("%s has %d speakers, fewer than %d jobs: splitting by utterance, so a speaker may span "
                       "several jobs", src, len(spk2utts), nj)
        bounds = [len(utts) * j // nj for j in range(nj + 1)]
        jobs = [utts[bounds[j]:bounds[j + 1]] for j in range(nj)]

    with atomic_dir(root, replace_check=lambda p: True) as tmp:
        for j, job in enumerate(jobs, 1):
            write_tables(tmp / str(j), filter_tables(tables, job))
            copy_metadata(src, tmp / str(j))
    logger.info("split %s into %d jobs of %s utterances", src, nj, "/".join(str(len(j)) for j in jobs))
    return dirs
