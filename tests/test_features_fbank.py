"""Fbank features: Kaldi numerics (against lhotse's independent Kaldi re-implementation), frame counts,
resampling and the errors for bad audio or options."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from asrkt.features.fbank import FbankConfig, compute_fbank
from asrkt.utils.config import resolve
from asrkt.utils.errors import AsrktError


def tone(seconds: float, rate: int, freq: float = 440.0, seed: int = 0, num_samples: int | None = None):
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples if num_samples is not None else int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("snip_edges", [True, False])
def test_matches_kaldi_fbank_reference(snip_edges):
    """lhotse's torch Fbank re-implements Kaldi's compute-fbank-feats on [-1, 1] samples; Kaldi reads int16
    values, which scales the power spectrum by 32768^2, i.e. adds 2*ln(32768) to every log mel energy."""
    from lhotse.features.kaldi.extractors import Fbank, FbankConfig as LhotseFbankConfig

    x = tone(1.03, 16000)
    ours = compute_fbank(x, 16000, FbankConfig(snip_edges=snip_edges))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lhotse warns that snip_edges=True is unusual for lhotse
        ref = Fbank(LhotseFbankConfig(num_filters=40, snip_edges=snip_edges, high_freq=0.0, low_freq=20.0,
                                      dither=0.0)).extract(x, 16000)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref + 2 * np.log(32768.0), atol=2e-3)


@pytest.mark.parametrize("num_samples, snip, expected", [
    # Kaldi: window 400 samples, shift 160 at 16 kHz. snip_edges: 1 + (n - 400) // 160; else (n + 80) // 160.
    (400, True, 1), (559, True, 1), (560, True, 2), (16000, True, 98), (16000, False, 100),
    (399, False, 2), (239, False, 1), (16079, False, 100), (16080, False, 101),
])
def test_frame_count_formula(num_samples, snip, expected):
    cfg = FbankConfig(snip_edges=snip)
    feats = compute_fbank(tone(0, 16000, num_samples=num_samples), 16000, cfg)
    assert feats.shape == (expected, 40)
    assert cfg.num_frames(num_samples) == expected


def test_resampled_8k_gives_the_16k_frame_count_and_spectrum():
    x16, x8 = tone(1.0, 16000, freq=500.0), tone(1.0, 8000, freq=500.0)
    f16, f8 = compute_fbank(x16, 16000), compute_fbank(x8, 8000)
    assert f8.shape == f16.shape == (98, 40)
    # The tone lands in the same mel bin; bins above 4 kHz are empty in the 8 kHz audio.
    assert (f8.argmax(axis=1) == f16.argmax(axis=1)).all()
    assert f8[:, -5:].mean() < f16[:, -5:].mean() - 3


def test_empty_mel_bins_of_upsampled_audio():
    from asrkt.features.fbank import empty_mel_bins

    assert empty_mel_bins(FbankConfig(), 16000) == 0
    assert empty_mel_bins(FbankConfig(), 8000) == 10  # of 40 bins up to 8 kHz, those centred above 4 kHz
    assert empty_mel_bins(FbankConfig(num_mel_bins=23), 8000) == 5
    assert empty_mel_bins(FbankConfig(sample_rate=8000), 8000) == 0


def test_other_rate_is_an_error_without_resampling():
    cfg = FbankConfig(allow_resample=False)
    with pytest.raises(AsrktError) as e:
        compute_fbank(tone(0.5, 8000), 8000, cfg, utt="spk1-a", source="data/train/wav.scp")
    msg = str(e.value)
    assert msg.startswith("data/train/wav.scp, utterance 'spk1-a':")
    assert "8000 Hz" in msg and "16000 Hz" in msg and "allow_resample" in msg
    # The config's own rate is fine.
    assert compute_fbank(tone(0.5, 8000), 8000, FbankConfig(sample_rate=8000, allow_resample=False)).shape[0] == 48


def test_too_short_audio_is_an_error_naming_the_utterance():
    with pytest.raises(AsrktError, match=r"wav.scp, utterance 'u1': audio too short for one frame: 300 samples"):
        compute_fbank(np.zeros(300, np.float32), 16000, utt="u1", source="wav.scp")
    # snip_edges false pads the edges: 300 samples still make 2 frames, as in Kaldi.
    assert compute_fbank(np.zeros(300, np.float32), 16000, FbankConfig(snip_edges=False)).shape == (2, 40)


def test_non_finite_and_multichannel_samples_are_errors():
    x = tone(0.5, 16000)
    x[100] = np.nan
    with pytest.raises(AsrktError, match="utterance 'u': audio contains NaN"):
        compute_fbank(x, 16000, utt="u")
    with pytest.raises(AsrktError, match="expected mono audio"):
        compute_fbank(np.zeros((2, 8000), np.float32), 16000, utt="u")


def test_bad_options_are_asrkt_errors_not_crashes():
    x = tone(0.5, 16000)
    with pytest.raises(AsrktError, match=r"Nyquist \(8000 Hz\), got low_freq 20 and high_freq 9000"):
        compute_fbank(x, 16000, FbankConfig(high_freq=9000.0))
    with pytest.raises(AsrktError, match="window_type must be one of"):
        compute_fbank(x, 16000, FbankConfig(window_type="kaiser"))
    with pytest.raises(AsrktError, match="num_mel_bins must be at least 3"):
        compute_fbank(x, 16000, FbankConfig(num_mel_bins=1))


def test_options_reach_the_extractor():
    x = tone(0.5, 16000)
    base = compute_fbank(x, 16000)
    assert compute_fbank(x, 16000, FbankConfig(use_energy=True)).shape == (48, 41)
    assert FbankConfig(use_energy=True).dim == 41
    assert compute_fbank(x, 16000, FbankConfig(num_mel_bins=23)).shape == (48, 23)
    assert compute_fbank(x, 16000, FbankConfig(frame_shift_ms=20.0)).shape == (24, 40)
    assert not np.allclose(compute_fbank(x, 16000, FbankConfig(preemph_coeff=0.0)), base)
    assert not np.allclose(compute_fbank(x, 16000, FbankConfig(window_type="hamming")), base)
    # dither 0 (the default) is deterministic
    np.testing.assert_array_equal(base, compute_fbank(x, 16000))


def test_config_from_yaml_and_overrides(tmp_path):
    (tmp_path / "fbank.yaml").write_text("num_mel_bins: 23\nsnip_edges: false\n")
    cfg = resolve(FbankConfig, tmp_path / "fbank.yaml", {"frame_shift_ms": 20})
    assert (cfg.num_mel_bins, cfg.snip_edges, cfg.frame_shift_ms, cfg.sample_rate) == (23, False, 20.0, 16000)
    (tmp_path / "bad.yaml").write_text("num_mel_bin: 23\n")
    with pytest.raises(AsrktError, match="unknown config key 'num_mel_bin'"):
        resolve(FbankConfig, tmp_path / "bad.yaml")
