"""Kaldi-compatible log mel filterbank features, computed by kaldi-native-fbank.

``FbankConfig`` mirrors the options of Kaldi's ``compute-fbank-feats`` (same names, same defaults except
``num_mel_bins=40`` and ``dither=0``, so features are deterministic). ``compute_fbank`` takes float samples
in [-1, 1] (as :func:`asrkt.features.audio.read_audio` returns them) and scales them by 32768 first,
because Kaldi reads WAV samples as int16 values: the log energies then equal Kaldi's, not Kaldi's minus
``2*ln(32768)``. ``dither`` is therefore in int16 units too, as in Kaldi (Kaldi's own default is 1.0).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from asrkt.features.audio import resample
from asrkt.utils.errors import AsrktError, fail

INT16_SCALE = 32768.0
WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "sine", "blackman")


@dataclasses.dataclass
class FbankConfig:
    """Options of Kaldi's fbank (``compute-fbank-feats --help`` names, underscores for dashes)."""

    sample_rate: int = 16000  # features are computed at this rate; other rates are resampled to it
    allow_resample: bool = True  # False: audio at another rate is an error (Kaldi's behaviour)
    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0  # int16 units, as Kaldi; 0 keeps features deterministic
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    blackman_coeff: float = 0.42
    round_to_power_of_two: bool = True
    snip_edges: bool = True  # True: only frames that fit entirely in the audio (Kaldi default)
    low_freq: float = 20.0
    high_freq: float = 0.0  # 0 = Nyquist; negative = offset from Nyquist (Kaldi semantics)
    use_energy: bool = False  # True adds log energy as an extra (first) dimension
    energy_floor: float = 0.0
    raw_energy: bool = True
    htk_compat: bool = False
    use_log_fbank: bool = True
    use_power: bool = True

    @property
    def dim(self) -> int:
        """Output feature dimension."""
        return self.num_mel_bins + (1 if self.use_energy else 0)

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi produces from ``num_samples`` samples at ``sample_rate`` (Kaldi's NumFrames)."""
        length = int(self.sample_rate * 0.001 * self.frame_length_ms)
        shift = int(self.sample_rate * 0.001 * self.frame_shift_ms)
        if self.snip_edges:
            return 0 if num_samples < length else 1 + (num_samples - length) // shift
        return (num_samples + shift // 2) // shift


def check_config(cfg: FbankConfig, source="fbank config") -> None:
    """Reject impossible options with an AsrktError before kaldi-native-fbank sees them."""
    nyquist = cfg.sample_rate / 2
    high = cfg.high_freq if cfg.high_freq > 0 else nyquist + cfg.high_freq
    problems = []
    if cfg.sample_rate <= 0:
        problems.append(f"sample_rate must be positive, got {cfg.sample_rate}")
    if cfg.num_mel_bins < 3:
        problems.append(f"num_mel_bins must be at least 3, got {cfg.num_mel_bins}")
    if cfg.frame_length_ms <= 0 or cfg.frame_shift_ms <= 0:
        problems.append("frame_length_ms and frame_shift_ms must be positive")
    if int(cfg.sample_rate * 0.001 * cfg.frame_shift_ms) < 1:
        problems.append(f"frame_shift_ms {cfg.frame_shift_ms} is shorter than one sample")
    if cfg.window_type not in WINDOW_TYPES:
        problems.append(f"window_type must be one of {', '.join(WINDOW_TYPES)}, got '{cfg.window_type}'")
    if not (0 <= cfg.low_freq < high <= nyquist):
        problems.append(f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist:g} Hz), got low_freq "
                        f"{cfg.low_freq:g} and high_freq {cfg.high_freq:g} (= {high:g} Hz)")
    if cfg.dither < 0:
        problems.append(f"dither must be >= 0, got {cfg.dither}")
    if problems:
        raise AsrktError(f"{source}: " + "; ".join(problems))


def fbank_options(cfg: FbankConfig):
    """The ``kaldi_native_fbank.FbankOptions`` equivalent to ``cfg``."""
    import kaldi_native_fbank as knf

    check_config(cfg)
    opts = knf.FbankOptions()
    fo = opts.frame_opts
    fo.samp_freq = float(cfg.sample_rate)
    fo.frame_length_ms = cfg.frame_length_ms
    fo.frame_shift_ms = cfg.frame_shift_ms
    fo.dither = cfg.dither
    fo.preemph_coeff = cfg.preemph_coeff
    fo.remove_dc_offset = cfg.remove_dc_offset
    fo.window_type = cfg.window_type
    fo.blackman_coeff = cfg.blackman_coeff
    fo.round_to_power_of_two = cfg.round_to_power_of_two
    fo.snip_edges = cfg.snip_edges
    mo = opts.mel_opts
    mo.num_bins = cfg.num_mel_bins
    mo.low_freq = cfg.low_freq
    mo.high_freq = cfg.high_freq
    opts.use_energy = cfg.use_energy
    opts.energy_floor = cfg.energy_floor
    opts.raw_energy = cfg.raw_energy
    opts.htk_compat = cfg.htk_compat
    opts.use_log_fbank = cfg.use_log_fbank
    opts.use_power = cfg.use_power
    return opts


def _mel(freq: float) -> float:
    return 1127.0 * np.log(1.0 + freq / 700.0)


def empty_mel_bins(cfg: FbankConfig, audio_rate: int) -> int:
    """How many of the top mel bins get no energy from audio sampled at ``audio_rate`` (upsampled to
    ``cfg.sample_rate``): those whose centre lies above the audio's Nyquist frequency (Kaldi's bin layout)."""
    nyquist = cfg.sample_rate / 2
    high = cfg.high_freq if cfg.high_freq > 0 else nyquist + cfg.high_freq
    lo, hi = _mel(cfg.low_freq), _mel(high)
    step = (hi - lo) / (cfg.num_mel_bins + 1)
    centres = lo + step * np.arange(1, cfg.num_mel_bins + 1)
    return int(np.sum(centres >= _mel(audio_rate / 2)))


def resample_message(cfg: FbankConfig, audio_rate: int, count: int, total: int, example: str, source) -> str:
    """The one warning of a feature job whose audio was resampled: how much, from what rate, what it costs."""
    what = (f"{source}: {count} of {total} utterances (e.g. '{example}') are sampled at {audio_rate} Hz and were "
            f"resampled to the fbank config's sample_rate {cfg.sample_rate} Hz")
    if audio_rate < cfg.sample_rate:
        n = empty_mel_bins(cfg, audio_rate)
        what += (f"; upsampled audio has nothing above {audio_rate / 2:g} Hz, so the top {n} of "
                 f"{cfg.num_mel_bins} mel bins are empty")
    return (what + f". If the corpus is {audio_rate} Hz, set sample_rate: {audio_rate} in the fbank config; "
            "allow_resample: false refuses such audio instead")


def compute_fbank(samples: np.ndarray, rate: int, cfg: FbankConfig | None = None, utt: str | None = None,
                  source=None) -> np.ndarray:
    """Log mel filterbank features, float32 ``(frames, cfg.dim)``, numerically as Kaldi's compute-fbank-feats.

    ``samples``: mono float audio in [-1, 1] at ``rate`` Hz. Audio at another rate than
    ``cfg.sample_rate`` is resampled when ``cfg.allow_resample``, else it is an error. Errors (wrong rate,
    audio shorter than one frame, non-finite samples, bad options) are AsrktErrors naming ``source``
    (e.g. the wav.scp file) and ``utt``.
    """
    import kaldi_native_fbank as knf

    cfg = cfg or FbankConfig()
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise fail(f"expected mono audio (1-D samples), got shape {samples.shape}", source, utt)
    if not np.all(np.isfinite(samples)):
        raise fail("audio contains NaN or infinite samples", source, utt)
    if int(rate) != cfg.sample_rate:
        if not cfg.allow_resample:
            raise fail(f"audio is sampled at {rate} Hz but the fbank config wants {cfg.sample_rate} Hz "
                       "(set allow_resample true, or sample_rate to the audio's rate)", source, utt)
        samples = resample(samples, int(rate), cfg.sample_rate)
    opts = fbank_options(cfg)
    expected = cfg.num_frames(samples.size)
    if expected == 0:
        raise fail(f"audio too short for one frame: {samples.size} samples at {cfg.sample_rate} Hz "
                   f"({samples.size / cfg.sample_rate * 1000:.1f} ms < frame_length_ms "
                   f"{cfg.frame_length_ms:g})", source, utt)
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(float(cfg.sample_rate), (samples * INT16_SCALE).astype(np.float32))
    computer.input_finished()
    n = computer.num_frames_ready
    if n != expected:  # would mean our frame-count formula and the extractor disagree: a bug, not bad input
        raise RuntimeError(f"kaldi-native-fbank gave {n} frames, expected {expected}")
    # get_frame returns a view into the extractor's buffer: stack copies it.
    return np.stack([computer.get_frame(i) for i in range(n)]).astype(np.float32, copy=False)
