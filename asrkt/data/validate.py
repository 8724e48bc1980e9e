"""Checking and repairing Kaldi data directories, as Kaldi's ``validate_data_dir.sh`` and ``fix_data_dir.sh``.

``validate_data_dir`` collects every problem it finds (tables not C-sorted or with duplicates, ids that are
not speaker-prefixed, spk2utt out of step with utt2spk, utterances missing from a table...) and raises ONE
:class:`DataDirError` listing the first few, each as ``file:line: utterance 'id' problem``.
``fix_data_dir`` sorts, deduplicates, keeps the utterances present in every table and rebuilds spk2utt,
backing up each file it changes under ``.backup/``.
"""
from __future__ import annotations

import dataclasses
import filecmp
import logging
import os
import shutil
import time
from pathlib import Path

from asrkt.data.kaldi_dir import c_sorted, read_table, read_table_lenient, spk2utt_from_utt2spk, \
    write_table
from asrkt.data.tables import ALL_TABLES, filter_tables, load_tables, show_ids
from asrkt.utils.atomic import atomic_path, tmp_name
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

MAX_SHOWN = 10
# Where a missing-utterance problem is reported: the first of these tables that has the utterance.
_LOCATION_ORDER = ("text", "utt2spk", "segments", "wav.scp", "feats.scp", "utt2num_frames", "utt2dur")
# A segment may end this far past its recording's end (Kaldi's extract-segments allows 0.1 s too).
SEGMENT_END_TOLERANCE_S = 0.1
FIX_HINT = ("fix_data_dir (python -m asrkt.bin.fix_data_dir DIR) sorts tables, drops duplicates and "
            "utterances missing from a table, and rebuilds spk2utt")


class DataDirError(AsrktError):
    """A data directory failed validation; ``.problems`` lists every problem found."""

    def __init__(self, path, problems: list[str], header: str | None = None, fixable: bool = False):
        self.path = Path(path)
        self.problems = list(problems)
        shown = self.problems[:MAX_SHOWN]
        if len(self.problems) == 1 and header is None:
            msg = shown[0]
        else:
            head = header or f"{path}: invalid data directory, {len(self.problems)} problems"
            msg = head + ":\n  " + "\n  ".join(shown)
            if len(self.problems) > MAX_SHOWN:
                msg += f"\n  ... and {len(self.problems) - MAX_SHOWN} more"
        if fixable:
            msg += f"\n  ({FIX_HINT})"
        super().__init__(msg)


@dataclasses.dataclass
class DataDirSummary:
    path: Path
    num_utts: int
    num_speakers: int
    num_recordings: int
    tables: list[str]
    warnings: list[str]

    def __str__(self) -> str:
        w = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        return (f"{self.path}: {self.num_utts} utterances, {self.num_speakers} speakers, "
                f"{self.num_recordings} recordings ({' '.join(self.tables)}){w}")


class _Checker:
    """Holds the tables of one dir and the problems found so far."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.fixable = False
        self.tables: dict[str, dict[str, str]] = {}
        self._lines: dict[str, dict[str, int]] = {}

    def file(self, name: str) -> Path:
        return self.path / name

    def line(self, name: str, key: str) -> int:
        """1-based line of ``key`` in table ``name`` (read_table keeps one key per line, in file order)."""
        if name not in self._lines:
            self._lines[name] = {k: i for i, k in enumerate(self.tables[name], 1)}
        return self._lines[name][key]

    def at(self, name: str, key: str) -> str:
        return f"{self.file(name)}:{self.line(name, key)}"

    def problem(self, msg: str, fixable: bool = False) -> None:
        self.problems.append(msg)
        self.fixable |= fixable

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        logger.warning(msg)

    def read(self, name: str) -> None:
        p = self.file(name)
        if not p.is_file():
            return
        try:
            self.tables[name] = read_table(p)
        except AsrktError as e:
            # Sorting and duplicates are reported, then the table is read leniently so that the other
            # checks still run; bytes that are not UTF-8 make the table unusable.
            try:
                self.tables[name], _ = read_table_lenient(p)
                self.problem(str(e), fixable=True)
            except AsrktError:
                self.problem(str(e))


def validate_data_dir(path, no_feats: bool = False, no_text: bool = False, no_wav: bool = False,
                      check_audio: bool = False) -> DataDirSummary:
    """Check a data dir as Kaldi's validate_data_dir.sh does; raise one DataDirError listing the problems.

    ``no_text``: text is not required (still checked when present). ``no_wav``: wav.scp and segments are
    neither required nor checked. ``no_feats``: feats.scp, utt2num_frames and cmvn.scp are not checked.
    ``check_audio``: read every recording and check it is readable, non-empty and long enough for its segments.
    """
    path = Path(path)
    if not path.is_dir():
        raise fail("data directory not found", path)
    c = _Checker(path)
    for name in ALL_TABLES:
        c.read(name)
    required = ["utt2spk", "spk2utt"] + ([] if no_text else ["text"]) + ([] if no_wav else ["wav.scp"])
    for name in required:
        if not c.file(name).is_file():
            hint = {"text": " (use --no-text if by design)", "wav.scp": " (use --no-wav if by design)",
                    "spk2utt": " (fix_data_dir creates it from utt2spk)"}.get(name, "")
            c.problem(f"{c.file(name)}: missing (required){hint}", fixable=name == "spk2utt")
    t = c.tables
    if "utt2spk" not in t:
        raise DataDirError(path, c.problems, fixable=c.fixable)

    _check_speakers(c)
    _check_utterance_sets(c, no_feats=no_feats, no_wav=no_wav)
    _check_values(c, no_feats=no_feats, no_wav=no_wav)
    if check_audio and not no_wav and "wav.scp" in t:
        _check_audio(c)
    if c.problems:
        raise DataDirError(path, c.problems, fixable=c.fixable)

    utts = t["utt2spk"]
    summary = DataDirSummary(path=path, num_utts=len(utts), num_speakers=len(set(utts.values())),
                             num_recordings=len(t.get("wav.scp", utts)),
                             tables=[n for n in ALL_TABLES if n in t], warnings=c.warnings)
    logger.info("validated %s", summary)
    return summary


def _check_speakers(c: _Checker) -> None:
    utt2spk = c.tables["utt2spk"]
    prefix_ok = malformed_ok = True
    for utt, spk in utt2spk.items():
        if len(spk.split()) != 1:
            c.problem(f"{c.at('utt2spk', utt)}: utterance '{utt}' must map to exactly one speaker id, "
                      f"got '{spk}'")
            prefix_ok = malformed_ok = False
        elif not utt.startswith(spk):
            c.problem(f"{c.at('utt2spk', utt)}: utterance '{utt}' does not start with its speaker id '{spk}' "
                      f"(Kaldi needs speaker-prefixed utterance ids, e.g. '{spk}-{utt}')")
            prefix_ok = False
    if prefix_ok:
        # Kaldi: `sort -k2 utt2spk` must equal utt2spk, so that per-speaker tools can stream by utterance.
        # Prefixed ids can still break it when one speaker id is a prefix of another ('a' and 'a-b').
        by_utt = list(utt2spk)
        by_spk = sorted(by_utt, key=lambda u: (utt2spk[u].encode(), u.encode()))
        for u, v in zip(by_utt, by_spk):
            if u != v:
                c.problem(f"{c.at('utt2spk', u)}: utterance '{u}' (speaker '{utt2spk[u]}') is out of order "
                          f"when utt2spk is sorted by speaker: '{v}' (speaker '{utt2spk[v]}') sorts before it; "
                          "a speaker id is probably a prefix of another: use fixed-width speaker ids")
                break

    if "spk2utt" not in c.tables or not malformed_ok:  # (comparing with a malformed utt2spk says nothing new)
        return
    spk2utt = c.tables["spk2utt"]
    expected = spk2utt_from_utt2spk(utt2spk)
    for spk, listed in spk2utt.items():
        loc = c.at("spk2utt", spk)
        if spk not in expected:
            c.problem(f"{loc}: speaker '{spk}' is not in utt2spk", fixable=True)
            continue
        got, want = listed.split(), expected[spk].split()
        if got == want:
            continue
        seen = set()
        for u in got:
            if u in seen:
                c.problem(f"{loc}: speaker '{spk}' lists utterance '{u}' twice", fixable=True)
            elif u not in utt2spk:
                c.problem(f"{loc}: speaker '{spk}' lists utterance '{u}' which is not in utt2spk", fixable=True)
            elif utt2spk[u] != spk:
                c.problem(f"{loc}: speaker '{spk}' lists utterance '{u}' which utt2spk "
                          f"({c.at('utt2spk', u)}) assigns to speaker '{utt2spk[u]}'", fixable=True)
            seen.add(u)
        for u in want:
            if u not in seen:
                c.problem(f"{loc}: speaker '{spk}' does not list its utterance '{u}' ({c.at('utt2spk', u)})",
                          fixable=True)
        if set(got) == set(want) and len(got) == len(want):
            c.problem(f"{loc}: speaker '{spk}': utterances are not C-sorted", fixable=True)
    for spk, utts in expected.items():
        if spk not in spk2utt:
            u = utts.split()[0]
            c.problem(f"{c.at('utt2spk', u)}: speaker '{spk}' (utterance '{u}') is not in spk2utt", fixable=True)


def _check_utterance_sets(c: _Checker, no_feats: bool, no_wav: bool) -> None:
    """Every per-utterance table must hold the same utterances; one problem per utterance."""
    t = c.tables
    names = ["utt2spk", "text"]
    if not no_wav:
        names.append("segments" if "segments" in t else "wav.scp")
    names.append("utt2dur")
    if not no_feats:
        names += ["feats.scp", "utt2num_frames"]
    names = [n for n in names if n in t]
    union: set[str] = set()
    for n in names:
        union.update(t[n])
    for utt in c_sorted(union):
        missing = [n for n in names if utt not in t[n]]
        if missing:
            where = next(n for n in _LOCATION_ORDER if n in names and utt in t[n])
            c.problem(f"{c.at(where, utt)}: utterance '{utt}' is not in {', '.join(missing)}", fixable=True)


def _check_values(c: _Checker, no_feats: bool, no_wav: bool) -> None:
    t = c.tables
    speakers = set(t["utt2spk"].values())
    if "text" in t:
        for utt, words in t["text"].items():
            if not words:
                c.warn(f"{c.at('text', utt)}: utterance '{utt}' has an empty transcript")
    if not no_wav and "wav.scp" in t:
        for rec, value in t["wav.scp"].items():
            if not value:
                c.problem(f"{c.at('wav.scp', rec)}: recording '{rec}' has no file name or command")
    if not no_wav and "segments" in t:
        used = set()
        for utt, value in t["segments"].items():
            loc = c.at("segments", utt)
            f = value.split()
            if len(f) != 3:
                c.problem(f"{loc}: utterance '{utt}': expected '<recording> <start> <end>', got '{value}'")
                continue
            try:
                start, end = float(f[1]), float(f[2])
            except ValueError:
                c.problem(f"{loc}: utterance '{utt}': start and end must be numbers, got '{value}'")
                continue
            if start < 0 or (end <= start and end != -1):
                c.problem(f"{loc}: utterance '{utt}': bad segment times {start} to {end}")
            used.add(f[0])
            if "wav.scp" in t and f[0] not in t["wav.scp"]:
                c.problem(f"{loc}: utterance '{utt}': recording '{f[0]}' is not in wav.scp", fixable=True)
        unused = [r for r in t.get("wav.scp", {}) if r not in used]
        if unused:
            c.warn(f"{c.file('wav.scp')}: {len(unused)} recording(s) not used by segments: {show_ids(unused)}")
    for name, kind in (("utt2dur", float), ("utt2num_frames", int)):
        if name not in t or (no_feats and name == "utt2num_frames"):
            continue
        for utt, value in t[name].items():
            try:
                ok = kind(value) > 0
            except ValueError:
                ok = False
            if not ok:
                what = "a positive number" if kind is float else "a positive integer"
                c.problem(f"{c.at(name, utt)}: utterance '{utt}': value must be {what}, got '{value}'")
    if no_feats:
        return
    if "feats.scp" in t:
        for utt, value in t["feats.scp"].items():
            if not value:
                c.problem(f"{c.at('feats.scp', utt)}: utterance '{utt}' has no rxfilename")
    if "cmvn.scp" in t:
        for spk in t["cmvn.scp"]:
            if spk not in speakers:
                c.problem(f"{c.at('cmvn.scp', spk)}: speaker '{spk}' is not in utt2spk", fixable=True)
        for spk in c_sorted(speakers - set(t["cmvn.scp"])):
            u = next(u for u, s in t["utt2spk"].items() if s == spk)
            c.problem(f"{c.at('utt2spk', u)}: speaker '{spk}' has no entry in cmvn.scp "
                      "(cmvn.scp is per speaker; recompute it)", fixable=True)


def _check_audio(c: _Checker) -> None:
    from asrkt.features.audio import read_audio  # soundfile only when audio is really read

    wav = c.tables["wav.scp"]
    durations, rates = {}, {}
    start, last_log = time.time(), time.time()
    for i, (rec, value) in enumerate(wav.items(), 1):
        if not value:
            continue
        try:
            samples, rate = read_audio(value, utt=rec, source=c.at("wav.scp", rec))
        except AsrktError as e:
            c.problem(str(e))
            continue
        durations[rec] = samples.shape[0] / rate
        rates.setdefault(rate, rec)
        if time.time() - last_log > 10:
            last_log = time.time()
            speed = i / (last_log - start)
            logger.info("checked %d/%d recordings (%.1f recordings/s, ETA %.0f s)", i, len(wav), speed,
                        (len(wav) - i) / speed)
    if len(rates) > 1:
        c.warn(f"{c.file('wav.scp')}: recordings have different sample rates: "
               + ", ".join(f"{r} Hz (e.g. '{rec}')" for r, rec in sorted(rates.items())))
    for utt, value in c.tables.get("segments", {}).items():
        f = value.split()
        if len(f) == 3 and f[0] in durations:
            try:
                end = float(f[2])
            except ValueError:
                continue
            if end > durations[f[0]] + SEGMENT_END_TOLERANCE_S:
                c.problem(f"{c.at('segments', utt)}: utterance '{utt}' ends at {end} s but recording "
                          f"'{f[0]}' lasts {durations[f[0]]:.3f} s")


# ----------------------------------------------------------------------------------------------------------
# fix_data_dir


@dataclasses.dataclass
class FixReport:
    path: Path
    num_utts: int
    dropped: dict[str, list[str]]  # reason -> dropped utterance ids
    changed: list[str]  # table names rewritten
    backup_dir: Path | None


def _backup(path: Path, backup_dir: Path) -> Path:
    """Copy ``path`` into ``backup_dir``; an older, different backup of the same file is kept as name.N."""
    backup_dir.mkdir(exist_ok=True)
    dst = backup_dir / path.name
    n = 0
    while dst.exists() and not filecmp.cmp(dst, path, shallow=False):
        n += 1
        dst = backup_dir / f"{path.name}.{n}"
    if not dst.exists():
        with atomic_path(dst) as tmp:
            shutil.copy2(path, tmp)
    return dst


def fix_data_dir(path) -> FixReport:
    """Repair a data dir as Kaldi's fix_data_dir.sh does, then validate it.

    Sorts every table, drops duplicate lines (first kept), keeps only the utterances present in every
    per-utterance table (and whose recording is in wav.scp, and whose speaker is in cmvn.scp when present),
    filters the per-speaker and per-recording tables to match and rebuilds spk2utt. Each file that changes
    is first copied to ``path/.backup/``; every table is replaced atomically. Non-UTF-8 text is not guessed
    at: it raises. Raises DataDirError if problems it cannot repair remain (e.g. ids not speaker-prefixed).
    """
    path = Path(path)
    if not (path / "utt2spk").is_file():
        raise fail("utt2spk: missing; fix_data_dir needs it to know the utterances", path)
    tables = load_tables(path, lenient=True, exclude=("spk2utt",))  # spk2utt is rebuilt from utt2spk
    dropped: dict[str, list[str]] = {}

    def drop(reason: str, utts) -> None:
        utts = c_sorted(set(utts) & keep)
        if utts:
            dropped[reason] = utts
            keep.difference_update(utts)
            logger.warning("%s: dropping %d utterance(s) %s: %s", path, len(utts), reason, show_ids(utts))

    keep = set(tables["utt2spk"])
    drop("whose utt2spk entry is not exactly one speaker id",
         [u for u, s in tables["utt2spk"].items() if len(s.split()) != 1])
    per_utt = ["text", "segments" if "segments" in tables else "wav.scp", "utt2dur", "feats.scp",
               "utt2num_frames"]
    for name in per_utt:
        if name in tables:
            drop(f"not in {name}", keep - set(tables[name]))
            extra = set(tables[name]) - set(tables["utt2spk"])
            if extra:
                logger.warning("%s: dropping %d line(s) for utterances not in utt2spk: %s", path / name,
                               len(extra), show_ids(extra))
    if "segments" in tables:
        recs = tables.get("wav.scp")
        drop("whose recording is not in wav.scp" if recs is not None else "with a malformed segments line",
             [u for u, v in tables["segments"].items()
              if len(v.split()) != 3 or (recs is not None and v.split()[0] not in recs)])
    if "cmvn.scp" in tables:
        drop("whose speaker is not in cmvn.scp", [u for u in keep if tables["utt2spk"][u] not in tables["cmvn.scp"]])
    if not keep:
        raise fail("no utterance is left after keeping those present in every table; nothing was changed",
                   path)

    fixed = filter_tables(tables, keep)
    backup_dir = path / ".backup"
    changed = []
    for name in ALL_TABLES:
        if name not in fixed:
            continue
        target = path / name
        tmp = tmp_name(target).with_suffix(".fix")
        try:
            write_table(tmp, fixed[name])
            if target.is_file() and filecmp.cmp(tmp, target, shallow=False):
                continue
            if target.is_file():
                _backup(target, backup_dir)
            os.replace(tmp, target)
            changed.append(name)
        finally:
            if tmp.exists():
                tmp.unlink()
    if changed:
        logger.info("%s: rewrote %s (old versions in %s)", path, " ".join(changed), backup_dir)
    else:
        logger.info("%s: nothing to fix", path)
    report = FixReport(path=path, num_utts=len(keep), dropped=dropped, changed=changed,
                       backup_dir=backup_dir if backup_dir.is_dir() else None)
    try:
        validate_data_dir(path, no_text="text" not in fixed, no_wav="wav.scp" not in fixed)
    except DataDirError as e:
        raise DataDirError(path, e.problems, header=f"{path}: fix_data_dir cannot repair these problems "
                                                    f"(its other changes are made; old files are in {backup_dir})")
    return report
