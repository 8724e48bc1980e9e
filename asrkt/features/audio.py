"""Reading audio named by ``wav.scp`` entries (files or ``cmd |`` pipes) and rate conversion."""
from __future__ import annotations

import io
import math
import subprocess

import numpy as np
import soundfile

from asrkt.utils.errors import fail


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly, anti-aliased), float32 in and out."""
    if from_rate == to_rate:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(samples, int(to_rate) // g, int(from_rate) // g).astype(np.float32)


def read_audio(entry: str, utt: str | None = None, source=None, channels_seen: dict | None = None
               ) -> tuple[np.ndarray, int]:
    """Read one ``wav.scp`` value: a path, or a command ending in ``|`` whose stdout is a WAV/FLAC.

    Returns mono float32 samples in [-1, 1] and the sample rate. Errors name ``source`` (the wav.scp
    file) and the utterance. Multi-channel audio takes the first channel, as Kaldi does by default; with
    ``channels_seen``, it counts such recordings there (``{channels: [count, first utterance]}``) so that the
    caller can say so once.
    """
    entry = entry.strip()
    try:
        if entry.endswith("|"):
            proc = subprocess.run(entry[:-1], shell=True, capture_output=True, timeout=600)
            if proc.returncode != 0:
                raise fail(f"command '{entry}' failed: {proc.stderr.decode(errors='replace').strip()}",
                           source, utt)
            data, rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        else:
            data, rate = soundfile.read(entry, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise fail(f"cannot read audio '{entry}': {e}", source, utt) from None
    if data.shape[0] == 0:
        raise fail(f"audio '{entry}' is empty (zero samples)", source, utt)
    if data.shape[1] > 1 and channels_seen is not None:
        channels_seen.setdefault(data.shape[1], [0, utt])[0] += 1
    return data[:, 0], int(rate)
