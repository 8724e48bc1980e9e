"""Bridge between Kaldi data dirs and lhotse manifests, through lhotse's own ``lhotse.kaldi`` functions.

Import: ``kaldi_dir_to_lhotse`` (validates the dir first, then ``lhotse.kaldi.load_kaldi_data_dir``).
Export: ``lhotse_to_kaldi_dir`` (``lhotse.kaldi.export_to_kaldi``, after making utterance ids speaker-prefixed
as our validator requires, then adds spk2utt and validates the result). Manifests are ``.jsonl.gz``.
lhotse is imported lazily: it takes seconds to import.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from asrkt.data.kaldi_dir import read_table, spk2utt_from_utt2spk, write_table
from asrkt.data.tables import atomic_dir
from asrkt.data.validate import validate_data_dir
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


def _detect_sampling_rate(path: Path) -> int:
    """The sample rate shared by every recording of ``wav.scp`` (headers of files; first command run)."""
    import soundfile

    from asrkt.features.audio import read_audio

    wav_scp = path / "wav.scp"
    rates: dict[int, str] = {}
    for lineno, (rec, value) in enumerate(read_table(wav_scp).items(), 1):
        if value.endswith("|"):
            if not rates:
                rates[read_audio(value, utt=rec, source=f"{wav_scp}:{lineno}")[1]] = rec
            continue
        try:
            rates.setdefault(soundfile.info(value).samplerate, rec)
        except (RuntimeError, OSError) as e:
            raise fail(f"cannot read audio '{value}': {e}", f"{wav_scp}:{lineno}", rec) from None
    if len(rates) > 1:
        raise fail("recordings have different sample rates ("
                   + ", ".join(f"{r} Hz in '{rec}'" for r, rec in sorted(rates.items()))
                   + "); resample them or pass one sampling_rate", wav_scp)
    return next(iter(rates))


def kaldi_dir_to_lhotse(path, sampling_rate: int | None = None):
    """Load a Kaldi data dir as ``(RecordingSet, SupervisionSet)``.

    The dir is validated with our checks first, so bad input fails with a message naming file and line
    rather than an assertion inside lhotse. ``sampling_rate`` defaults to the recordings' own rate.
    Durations come from reco2dur when present, else lhotse reads them from the audio.
    """
    from lhotse.kaldi import load_kaldi_data_dir

    path = Path(path)
    validate_data_dir(path, no_feats=True, no_text=True)
    if sampling_rate is None:
        sampling_rate = _detect_sampling_rate(path)
    with warnings.catch_warnings():
        # feats.scp is not imported (we compute our own features); lhotse warns about it.
        warnings.filterwarnings("ignore", message=".*feats.scp.*")
        try:
            recordings, supervisions, _ = load_kaldi_data_dir(path, sampling_rate=sampling_rate)
        except (AssertionError, ValueError, KeyError, RuntimeError) as e:
            raise fail(f"lhotse could not load it: {type(e).__name__}: {e}", path) from None
    logger.info("%s: %d recordings, %d supervisions at %d Hz", path, len(recordings), len(supervisions),
                sampling_rate)
    return recordings, supervisions


def _store(manifest, out: Path) -> None:
    """Write a manifest atomically; the temporary name keeps the suffix, which tells lhotse the format."""
    tmp = out.with_name(f".{out.name[:-len('.jsonl.gz')]}.tmp{os.getpid()}.jsonl.gz")
    try:
        manifest.to_file(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_manifests(recordings, supervisions, out_dir, prefix: str) -> tuple[Path, Path]:
    """Write ``out_dir/{prefix}_recordings.jsonl.gz`` and ``{prefix}_supervisions.jsonl.gz``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / f"{prefix}_recordings.jsonl.gz", out_dir / f"{prefix}_supervisions.jsonl.gz"
    _store(recordings, paths[0])
    _store(supervisions, paths[1])
    logger.info("wrote %s and %s", *paths)
    return paths


def read_manifests(recordings_path, supervisions_path):
    """Load a ``(RecordingSet, SupervisionSet)`` pair from manifest files."""
    from lhotse import RecordingSet, SupervisionSet

    out = []
    for cls, p in ((RecordingSet, recordings_path), (SupervisionSet, supervisions_path)):
        if not Path(p).is_file():
            raise fail("manifest not found", p)
        try:
            out.append(cls.from_file(p))
        except Exception as e:  # lhotse raises many kinds for a bad manifest; report which file
            raise fail(f"cannot read as a {cls.__name__}: {type(e).__name__}: {e}", p) from None
    return tuple(out)


def _kaldi_supervisions(supervisions):
    """Supervisions made fit for a Kaldi dir: speaker set (the utterance itself if unknown, Kaldi's
    convention), ids prefixed with the speaker when they are not already, text never None."""
    from lhotse.utils import fastcopy

    out, seen = [], {}
    no_speaker = 0
    for s in supervisions:
        for what, value in (("id", s.id), ("speaker", s.speaker or s.id)):
            if not value or any(c.isspace() for c in value):
                raise fail(f"supervision {what} '{value}' is empty or contains whitespace; Kaldi ids cannot")
        speaker = s.speaker or s.id
        no_speaker += not s.speaker
        utt = s.id if s.id.startswith(speaker) else f"{speaker}-{s.id}"
        if utt in seen:
            raise fail(f"supervisions '{seen[utt]}' and '{s.id}' both become Kaldi utterance '{utt}'")
        seen[utt] = s.id
        out.append(fastcopy(s, id=utt, speaker=speaker, text=s.text if s.text is not None else ""))
    if no_speaker:
        logger.warning("%d supervisions have no speaker: each is its own speaker", no_speaker)
    renamed = sum(1 for utt, orig in seen.items() if utt != orig)
    if renamed:
        logger.info("prefixed %d utterance ids with their speaker id (e.g. '%s')", renamed,
                    next(u for u, o in seen.items() if u != o))
    return out


def _whole_recordings(recordings, sups) -> bool:
    """True when every recording has exactly one supervision covering all of it, on one channel."""
    by_rec: dict[str, list] = {}
    for s in sups:
        by_rec.setdefault(s.recording_id, []).append(s)
    for r in recordings:
        got = by_rec.get(r.id, [])
        if (len(got) != 1 or r.num_channels != 1 or got[0].start != 0
                or abs(got[0].duration - r.duration) > 1e-3):
            return False
    return len(by_rec) == len(recordings)


def _drop_whole_recording_segments(path: Path) -> None:
    """Key wav.scp (and reco2dur) by utterance and remove segments: the plain Kaldi layout for one
    utterance per recording, which every tool handles without segment extraction."""
    segments = read_table(path / "segments")
    utt_of = {v.split()[0]: utt for utt, v in segments.items()}
    for name in ("wav.scp", "reco2dur"):
        if (path / name).is_file():
            write_table(path / name, {utt_of[rec]: v for rec, v in read_table(path / name).items()})
    (path / "segments").unlink()


def lhotse_to_kaldi_dir(recordings, supervisions, out_dir):
    """Write a Kaldi data dir from lhotse manifests (sets or paths) with lhotse's ``export_to_kaldi``.

    Utterance ids not starting with their speaker id get ``{speaker}-`` prepended; spk2utt is added;
    when each recording is one whole utterance, segments is dropped and wav.scp keyed by utterance
    (plain Kaldi layout); the dir is validated in a temporary folder and then replaces ``out_dir``. Returns the summary.
    """
    from lhotse import SupervisionSet
    from lhotse.kaldi import export_to_kaldi

    if isinstance(recordings, (str, os.PathLike)) or isinstance(supervisions, (str, os.PathLike)):
        recordings, supervisions = read_manifests(recordings, supervisions)
    out_dir = Path(out_dir)
    sups = _kaldi_supervisions(supervisions)
    if not sups:
        raise fail("no supervisions to export", out_dir)
    has_text = any(s.text for s in sups)
    with atomic_dir(out_dir) as tmp:
        try:
            export_to_kaldi(recordings, SupervisionSet.from_segments(sups), tmp)
        except (ValueError, KeyError, AssertionError) as e:
            raise fail(f"lhotse could not export: {type(e).__name__}: {e}", out_dir) from None
        if not has_text:
            (tmp / "text").unlink()
        if _whole_recordings(recordings, sups):
            _drop_whole_recording_segments(tmp)
        write_table(tmp / "spk2utt", spk2utt_from_utt2spk(read_table(tmp / "utt2spk")))
        try:
            summary = validate_data_dir(tmp, no_feats=True, no_text=not has_text)
        except AsrktError as e:
            raise AsrktError(f"the exported dir {out_dir} would be invalid: {e}") from None
    summary.path = out_dir
    logger.info("exported %s", summary)
    return summary
