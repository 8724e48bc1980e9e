"""CMVN: Kaldi's stats layout, apply-cmvn semantics, per-speaker application from a data dir."""
from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from asrkt.data.kaldi_dir import write_table
from asrkt.features.cmvn import CmvnApplier, SpeakerStats, apply_cmvn, compute_cmvn_stats
from asrkt.utils.errors import AsrktError


def rand_feats(n, d=5, seed=0, loc=3.0, scale=2.0):
    return np.random.default_rng(seed).normal(loc, scale, size=(n, d)).astype(np.float32)


def test_stats_layout_is_kaldis():
    a, b = rand_feats(7, seed=1), rand_feats(4, seed=2)
    stats = compute_cmvn_stats([a, b])
    both = np.concatenate([a, b]).astype(np.float64)
    assert stats.dtype == np.float64 and stats.shape == (2, 6)
    np.testing.assert_allclose(stats[0, :5], both.sum(0), rtol=1e-12)
    assert stats[0, 5] == 11  # frame count in the last column of row 0
    np.testing.assert_allclose(stats[1, :5], (both ** 2).sum(0), rtol=1e-12)
    assert stats[1, 5] == 0
    # Same as kaldi-native-fbank's (Kaldi-layout) accumulator.
    import kaldi_native_fbank as knf

    np.testing.assert_allclose(stats, knf.compute_cmvn_stats(np.concatenate([a, b])), rtol=1e-6)


def test_stats_errors():
    with pytest.raises(AsrktError, match="no feature matrices"):
        compute_cmvn_stats([], source="feats.scp")
    with pytest.raises(AsrktError, match="matrix 1: dimension 3 differs from the first matrix's 5"):
        compute_cmvn_stats([rand_feats(3), rand_feats(3, d=3)])


def test_apply_mean_and_variance():
    feats = rand_feats(50)
    stats = compute_cmvn_stats([feats])
    out = apply_cmvn(feats, stats)
    assert out.dtype == np.float32 and out.shape == feats.shape
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), feats.std(0), rtol=1e-5)  # variances untouched
    out = apply_cmvn(feats, stats, norm_vars=True)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1, rtol=1e-4)
    # Kaldi applies another utterance's (the speaker's) stats: x - mean, / std with the stats' moments.
    other = rand_feats(20, seed=5)
    mean = stats[0, :-1] / stats[0, -1]
    std = np.sqrt(stats[1, :-1] / stats[0, -1] - mean ** 2)
    np.testing.assert_allclose(apply_cmvn(other, stats, norm_vars=True), (other - mean) / std, rtol=1e-4,
                               atol=1e-5)
    # 1-row stats (Kaldi's mean-only form) work without norm_vars.
    np.testing.assert_allclose(apply_cmvn(other, stats[:1]), other - mean, atol=1e-5)


def test_apply_errors_name_the_utterance():
    feats = rand_feats(5)
    stats = compute_cmvn_stats([feats])
    with pytest.raises(AsrktError, match=r"cmvn.scp, utterance 'u1': CMVN stats of shape \(2, 6\) do not fit "
                                         r"features of dimension 4"):
        apply_cmvn(feats[:, :4], stats, utt="u1", source="cmvn.scp")
    with pytest.raises(AsrktError, match="insufficient CMVN stats: frame count 0"):
        apply_cmvn(feats, np.zeros((2, 6)), utt="u1")
    with pytest.raises(AsrktError, match="norm_vars needs 2-row"):
        apply_cmvn(feats, stats[:1], norm_vars=True)


def make_cmvn_dir(tmp_path):
    """A data dir with 2 speakers' features, per-speaker stats written with plain kaldiio."""
    feats = {f"spk{s}-u{u}": rand_feats(10 + 5 * u, seed=10 * s + u, loc=3.0 * (s + 1)) for s in (0, 1)
             for u in range(3)}
    utt2spk = {utt: utt.split("-")[0] for utt in feats}
    acc = SpeakerStats(utt2spk, source="utt2spk")
    for utt, m in feats.items():
        acc.add(utt, m)
    d = tmp_path / "data"
    write_table(d / "utt2spk", utt2spk)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/cmvn.ark,{d}/cmvn.scp") as w:
        for spk in sorted(acc.stats):
            w(spk, acc.stats[spk])
    return d, feats, utt2spk


def test_cmvn_applier_zero_mean_per_speaker(tmp_path):
    d, feats, utt2spk = make_cmvn_dir(tmp_path)
    applier = CmvnApplier(d)
    for spk in ("spk0", "spk1"):
        normed = np.concatenate([applier(u, m) for u, m in feats.items() if utt2spk[u] == spk])
        raw = np.concatenate([m for u, m in feats.items() if utt2spk[u] == spk])
        np.testing.assert_allclose(normed.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(normed.std(0), raw.std(0), rtol=1e-4)
    vapplier = CmvnApplier(d, norm_vars=True)
    normed = np.concatenate([vapplier(u, m) for u, m in feats.items() if utt2spk[u] == "spk1"])
    np.testing.assert_allclose(normed.std(0), 1, rtol=1e-4)


def test_cmvn_applier_errors(tmp_path):
    d, feats, utt2spk = make_cmvn_dir(tmp_path)
    applier = CmvnApplier(d)
    with pytest.raises(AsrktError, match=r"utt2spk, utterance 'spk9-x': utterance not in utt2spk"):
        applier("spk9-x", feats["spk0-u0"])
    write_table(d / "utt2spk", {**utt2spk, "spk2-u0": "spk2"})
    with pytest.raises(AsrktError, match=r"cmvn.scp: no CMVN stats for speaker 'spk2'"):
        CmvnApplier(d)("spk2-u0", feats["spk0-u0"])
    (d / "cmvn.scp").unlink()
    with pytest.raises(AsrktError, match=r"cmvn.scp: missing"):
        CmvnApplier(d)


def test_speaker_stats_errors():
    acc = SpeakerStats({"a-1": "a", "a-2": "a"}, source="data/utt2spk")
    with pytest.raises(AsrktError, match=r"data/utt2spk, utterance 'b-1': utterance has features but is not in "
                                         "utt2spk"):
        acc.add("b-1", rand_feats(3))
    acc.add("a-1", rand_feats(3))
    with pytest.raises(AsrktError, match=r"utterance 'a-2': feature shape \(3, 4\) differs in dimension"):
        acc.add("a-2", rand_feats(3, d=4))
