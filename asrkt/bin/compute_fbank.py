"""Compute Kaldi-compatible fbank features for every utterance of a data dir (one job of make_fbank.sh).

    python -m asrkt.bin.compute_fbank [--config conf/fbank.yaml] [--key value ...] <data-dir> <wspecifier>

Reads ``<data-dir>/wav.scp`` (and ``segments`` when present) and writes one float32 matrix per
utterance, e.g. to ``ark,scp:fbank/raw_fbank_train.1.ark,fbank/raw_fbank_train.1.scp``. Any bad
utterance stops the job with one ``ERROR:`` line naming the file, the utterance and the problem, and
leaves no ark/scp behind (they are written under temporary names and renamed at the end).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from asrkt.data.kaldi_dir import c_sorted, read_table
from asrkt.features.audio import read_audio
from asrkt.features.fbank import FbankConfig, check_config, compute_fbank, resample_message
from asrkt.utils.cli import main_wrapper
from asrkt.utils.config import add_config_arguments, config_from_args, config_hash, to_dict
from asrkt.utils.errors import fail
from asrkt.utils.logging import log_environment, setup_logging
from asrkt.utils.progress import Progress

logger = logging.getLogger(__name__)

# A segment may end this far past the end of its recording (rounding in the corpus's times); Kaldi's
# extract-segments uses the same 0.5 s default for --max-overshoot.
MAX_OVERSHOOT_S = 0.5




def _parse_segment(utt: str, value: str, path, wav_scp: dict) -> tuple[str, float, float]:
    fields = value.split()
    if len(fields) not in (3, 4):  # <recording> <start> <end> [<channel>]
        raise fail(f"expected '<utt> <recording> <start> <end>', got '{utt} {value}'", path, utt)
    rec = fields[0]
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise fail(f"start/end times must be numbers, got '{fields[1]}' '{fields[2]}'", path, utt) from None
    if start < 0 or (end != -1 and end <= start):
        raise fail(f"bad segment times {start:g}..{end:g} (need 0 <= start < end, or end -1 for the "
                   "end of the recording)", path, utt)
    if rec not in wav_scp:
        raise fail(f"recording '{rec}' is not in wav.scp", path, utt)
    return rec, start, end


def utterance_audio(data_dir: Path, channels_seen: dict | None = None):
    """Yield ``(utt, samples, rate, source)`` for every utterance of ``data_dir`` in C order.

    With a ``segments`` file the utterances are its entries, cut from the recordings of wav.scp (each
    recording read once when its segments are consecutive); ``source`` is the table to blame in errors.
    ``channels_seen``: see :func:`asrkt.features.audio.read_audio`.
    """
    wav_path = data_dir / "wav.scp"
    wav_scp = read_table(wav_path)
    seg_path = data_dir / "segments"
    if not seg_path.is_file():
        for utt in c_sorted(wav_scp):
            samples, rate = read_audio(wav_scp[utt], utt=utt, source=wav_path, channels_seen=channels_seen)
            yield utt, samples, rate, wav_path
        return
    segments = read_table(seg_path)
    cached_rec, cached = None, None  # segments are usually grouped by recording: read each once
    for utt in c_sorted(segments):
        rec, start, end = _parse_segment(utt, segments[utt], seg_path, wav_scp)
        if rec != cached_rec:
            cached_rec, cached = rec, read_audio(wav_scp[rec], utt=utt, source=wav_path, channels_seen=channels_seen)
        samples, rate = cached
        first = int(round(start * rate))
        last = samples.size if end == -1 else int(round(end * rate))
        if last > samples.size:
            if last - samples.size > MAX_OVERSHOOT_S * rate:
                raise fail(f"segment ends at {end:g} s, past the end of recording '{rec}' "
                           f"({samples.size / rate:.3f} s)", seg_path, utt)
            last = samples.size
        if first >= last:
            raise fail(f"segment starts at {start:g} s, at or after the end of recording '{rec}' "
                       f"({samples.size / rate:.3f} s)", seg_path, utt)
        yield utt, samples[first:last], rate, seg_path


def compute_data_dir(data_dir, wspecifier: str, cfg: FbankConfig) -> tuple[int, int]:
    """Write features of every utterance of ``data_dir`` to ``wspecifier``; returns (utts, frames)."""
    from asrkt.io import MatrixWriter

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise fail("data directory not found", data_dir)
    table = data_dir / ("segments" if (data_dir / "segments").is_file() else "wav.scp")
    total = len(read_table(table))
    progress = Progress(total, desc="fbank")
    num_frames = 0
    resampled: dict[int, list] = {}  # audio rate -> [count, first utterance, source]: one warning per rate
    channels: dict[int, list] = {}  # channels -> [count, first utterance] of multi-channel recordings
    utt2dur = read_table(data_dir / "utt2dur") if (data_dir / "utt2dur").is_file() else {}
    try:
        with MatrixWriter(wspecifier) as writer:
            for utt, samples, rate, source in utterance_audio(data_dir, channels):
                check_duration(samples.size / rate, utt2dur.get(utt), utt, data_dir / "utt2dur")
                feats = compute_fbank(samples, rate, cfg, utt=utt, source=source)
                if rate != cfg.sample_rate:
                    resampled.setdefault(rate, [0, utt, source])[0] += 1
                writer.write(utt, feats)
                num_frames += feats.shape[0]
                progress.update(1, feats.shape[0])
    finally:
        progress.close()
    for rate, (count, example, source) in sorted(resampled.items()):
        logger.warning("%s", resample_message(cfg, rate, count, total, example, source))
    for n, (count, example) in sorted(channels.items()):
        logger.warning("%s/wav.scp: %d recording(s) have %d channels (e.g. utterance '%s'): only channel 0 is used, "
                       "as Kaldi does; give wav.scp a command that mixes or picks the channel ('sox x.wav -t wav - "
                       "remix 1,2 |') if that is not what you want", data_dir, count, n, example)
    return total, num_frames


DURATION_TOLERANCE_S = 0.05  # utt2dur is written with 2-3 decimals; a truncated file is off by far more


def check_duration(seconds: float, expected, utt: str, utt2dur_path: Path) -> None:
    """The audio read must last what utt2dur says (when it says anything): a file truncated or replaced after data
    preparation would otherwise give fewer frames silently."""
    if expected is None:
        return
    try:
        expected = float(expected)
    except ValueError:
        raise fail(f"duration must be a number, got '{expected}'", utt2dur_path, utt) from None
    if abs(seconds - expected) > DURATION_TOLERANCE_S:
        raise fail(f"the audio lasts {seconds:.3f} s but utt2dur says {expected:.3f} s: the file was truncated or "
                   "changed after data preparation (redo stage 0, or fix the audio)", utt2dur_path, utt)


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt key must not pass as a prefix
    parser.add_argument("data_dir", help="Kaldi data dir (wav.scp, optional segments), e.g. data/train/split4/1")
    parser.add_argument("wspecifier", help="where to write, e.g. ark,scp:fbank/raw.1.ark,fbank/raw.1.scp")
    parser.add_argument("--log-level", default="INFO")
    add_config_arguments(parser, FbankConfig)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    cfg = config_from_args(args, FbankConfig)
    check_config(cfg, source=args.config or "fbank config")
    import kaldi_native_fbank

    log_environment(logger, {"kaldi_native_fbank": kaldi_native_fbank.__version__,
                             f"fbank config (hash {config_hash(cfg)})": to_dict(cfg)})
    start = time.monotonic()
    utts, frames = compute_data_dir(args.data_dir, args.wspecifier, cfg)
    elapsed = time.monotonic() - start
    logger.info("wrote %d utterances, %d frames (%.1f h of audio) to %s in %.1fs (%.0f frames/s)", utts, frames,
                frames * cfg.frame_shift_ms / 3.6e6, args.wspecifier, elapsed, frames / max(elapsed, 1e-9))


if __name__ == "__main__":
    main()
