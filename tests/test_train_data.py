"""asrkt.data.dataset and asrkt.transfer.soft_targets; also the helpers the other test_train_* files import.

The helpers build a tiny data dir with features (fbank from asrkt.features, or synthetic features when
that package is not there), per-speaker CMVN, feats_info.yaml, a char lang dir and dumped posteriors.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from asrkt.data.dataset import FrameBatchSampler, UtteranceDataset
from asrkt.data.kaldi_dir import DataDir, write_table
from asrkt.transfer.soft_targets import SoftTargets, frames_match
from asrkt.utils.errors import AsrktError

FEAT_DIM = 40


# ------------------------------------------------------------------------------------------------ helpers
def _features(data: DataDir, seed: int) -> tuple[dict, dict]:
    try:
        from asrkt.features.audio import read_audio
        from asrkt.features.fbank import FbankConfig, compute_fbank
        from asrkt.features.info import make_feats_info
    except ImportError:
        rng = np.random.default_rng(seed)
        feats = {u: rng.standard_normal((50 + 10 * i, FEAT_DIM)).astype(np.float32) + 5.0
                 for i, u in enumerate(data.utts)}
        info = {"kind": "synthetic", "dim": FEAT_DIM, "frame_shift_ms": 10.0, "config_hash": "synthetic"}
        return feats, info
    cfg = FbankConfig(num_mel_bins=FEAT_DIM)
    feats = {}
    for utt in data.utts:
        samples, rate = read_audio(data.wav_scp[utt], utt=utt)
        feats[utt] = compute_fbank(samples, rate, cfg)
    return feats, make_feats_info(cfg, len(feats), sum(len(f) for f in feats.values()))


def add_features(data_dir: Path, nan_utt: str | None = None, seed: int = 0) -> Path:
    """Write feats.scp, cmvn.scp (per speaker), utt2num_frames and feats_info.yaml into ``data_dir``.
    ``nan_utt``: that utterance's features get NaNs (after the CMVN stats were computed from clean ones)."""
    data = DataDir.load(data_dir)
    feats, info = _features(data, seed)
    stats = {}
    for spk, utts in data.spk2utt.items():
        m = np.concatenate([feats[u] for u in utts.split()]).astype(np.float64)
        s = np.zeros((2, m.shape[1] + 1))
        s[0, :-1], s[0, -1], s[1, :-1] = m.sum(0), len(m), (m * m).sum(0)
        stats[spk] = s
    if nan_utt is not None:
        feats[nan_utt] = feats[nan_utt].copy()
        feats[nan_utt][3:7] = np.nan
    with kaldiio.WriteHelper(f"ark,scp:{data_dir}/feats.ark,{data_dir}/feats.scp") as w:
        for utt in data.utts:
            w(utt, feats[utt])
    with kaldiio.WriteHelper(f"ark,scp:{data_dir}/cmvn.ark,{data_dir}/cmvn.scp") as w:
        for spk in sorted(stats):
            w(spk, stats[spk])
    write_table(data_dir / "utt2num_frames", {u: str(len(f)) for u, f in feats.items()})
    (data_dir / "feats_info.yaml").write_text(yaml.safe_dump(info))
    return data_dir


def make_lang(data_dir: Path, lang_dir: Path) -> Path:
    from asrkt.targets import train_tokenizer

    text = DataDir.load(data_dir).text
    train_tokenizer(text.values(), lang_dir, kind="char")
    return lang_dir


def feats_hash(data_dir: Path) -> str:
    return str(yaml.safe_load((Path(data_dir) / "feats_info.yaml").read_text())["config_hash"])


def write_posteriors(data_dir: Path, post_dir: Path, num_classes: int, kind: str = "log_probs", topk: int = 3,
                     seed: int = 0, frames_delta: dict | None = None, subsampling: int = 1,
                     info_overrides: dict | None = None, **more_overrides):
    """Random teacher posteriors for every utterance of ``data_dir`` (as stage 4 would dump them).

    ``frames_delta``: utt -> frames to add/remove, to make mismatches; ``info_overrides``/keywords: change
    post_info.yaml entries. Returns {utt: log-probs (T, C)}."""
    from asrkt.io import PosteriorWriter, topk_to_posterior

    rng = np.random.default_rng(seed)
    frames = {u: int(n) for u, n in DataDir.load(data_dir).utt2num_frames.items()}
    post_dir.mkdir(parents=True, exist_ok=True)
    log_probs = {}
    for utt, n in frames.items():
        t = -(-n // subsampling) + (frames_delta or {}).get(utt, 0)
        logits = torch.from_numpy(rng.standard_normal((t, num_classes)).astype(np.float32) * 3.0)
        log_probs[utt] = torch.log_softmax(logits, -1).numpy()
    if kind == "topk_posterior":
        with PosteriorWriter(f"ark,scp:{post_dir}/post.1.ark,{post_dir}/post.scp") as w:
            for utt, lp in log_probs.items():
                values, indices = torch.from_numpy(lp).topk(topk, dim=-1)
                w.write(utt, topk_to_posterior(indices.numpy(), values.exp().numpy()))
    else:
        with kaldiio.WriteHelper(f"ark,scp:{post_dir}/post.1.ark,{post_dir}/post.scp") as w:
            for utt, lp in log_probs.items():
                w(utt, lp)
    info = {"kind": kind, "num_classes": num_classes, "frame_shift_ms": 10.0 * subsampling,
            "subsampling": subsampling, "feature_config_hash": feats_hash(data_dir),
            "teacher_checkpoint_sha1": "0123abcd", "temperature": 1.0, "topk": topk if kind == "topk_posterior" else 0}
    info.update(info_overrides or {}, **more_overrides)
    (post_dir / "post_info.yaml").write_text(yaml.safe_dump(info))
    return log_probs


@pytest.fixture
def feats_dir(tiny_data_dir) -> Path:
    return add_features(tiny_data_dir)


# -------------------------------------------------------------------------------------------------- dataset
def test_dataset_applies_cmvn_and_encodes_text(feats_dir, tmp_path):
    from asrkt.targets import Tokenizer

    from asrkt.targets import build_objective

    lang = make_lang(feats_dir, tmp_path / "lang")
    tok = Tokenizer.load(lang)
    ds = UtteranceDataset(feats_dir)
    ds.add_source("hard_targets", build_objective("ctc", lang).target_source(feats_dir, ds.utts))
    data = DataDir.load(feats_dir)
    assert ds.utts == data.utts and ds.feat_dim == FEAT_DIM
    assert ds.num_frames == [int(data.utt2num_frames[u]) for u in ds.utts]
    # per-speaker CMVN: every speaker's frames have zero mean
    for spk, utts in data.spk2utt.items():
        idx = [ds.utts.index(u) for u in utts.split()]
        allf = torch.cat([ds[i].feats for i in idx])
        assert allf.mean(0).abs().max() < 1e-3
    item = ds[0]
    assert tok.decode(item.inputs["hard_targets"]) == " ".join(data.text[item.utt].split())
    lazy = UtteranceDataset(feats_dir, in_memory=False)
    assert torch.equal(lazy[2].feats, ds[2].feats) and lazy.num_frames == ds.num_frames


def test_dataset_errors_name_the_file(feats_dir, tmp_path):
    from asrkt.targets import build_objective

    ctc = build_objective("ctc", make_lang(feats_dir, tmp_path / "lang"))
    text = DataDir.load(feats_dir).text
    del text["spk1-u2"]
    write_table(feats_dir / "text", text)
    ds = UtteranceDataset(feats_dir)
    with pytest.raises(AsrktError, match=r"text.*spk1-u2.*no transcript"):
        ctc.target_source(feats_dir, ds.utts)
    (feats_dir / "cmvn.scp").unlink()
    with pytest.raises(AsrktError, match=r"cmvn\.scp: missing"):
        UtteranceDataset(feats_dir)


def test_sampler_budget_shuffle_and_determinism():
    lengths = [100, 50, 300, 120, 80, 90, 400, 60, 70, 2000]
    s = FrameBatchSampler(lengths, max_frames=400, seed=3, length_jitter=0.2)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 400  # 2000 frames: a batch of its own
    assert list(FrameBatchSampler(lengths, max_frames=400, seed=3, length_jitter=0.2)) == batches  # seeded
    orders = set()
    for epoch in range(6):
        s.set_epoch(epoch)
        orders.add(tuple(map(tuple, s)))
    assert len(orders) > 1  # order changes with the epoch
    fixed = FrameBatchSampler(lengths, max_frames=400, shuffle=False, max_utts=2)
    assert all(len(b) <= 2 for b in fixed)
    flat = [lengths[i] for b in fixed for i in b]
    assert flat == sorted(flat)


def test_collate_pads_and_masks(feats_dir, tmp_path):
    post = tmp_path / "post"
    write_posteriors(feats_dir, post, num_classes=7)
    soft = SoftTargets(post)
    from asrkt.train.terms import TeacherTargets
    from asrkt.train.trainer import _Source

    ds = UtteranceDataset(feats_dir)
    soft.load(ds.utts)
    ds.add_source("teacher_posteriors", _Source(soft.__getitem__, TeacherTargets.collate))
    batch = ds.collate([ds[0], ds[5], ds[2]])
    n = [ds.num_frames[i] for i in (0, 5, 2)]
    assert batch.feats.shape == (3, max(n), FEAT_DIM) and batch.lengths.tolist() == n
    teacher = batch.inputs["teacher_posteriors"]
    assert teacher.dense.shape == (3, max(n), 7) and teacher.mask.sum(1).tolist() == n
    assert torch.equal(batch.feats[0, :n[0]], ds[0].feats) and batch.feats[0, n[0]:].abs().sum() == 0


# ------------------------------------------------------------------------------------------------ posteriors
def test_frames_match_rule():
    assert frames_match(33, 100, 3) and frames_match(34, 100, 3) and not frames_match(35, 100, 3)
    assert frames_match(35, 100, 3, tolerance=1) and not frames_match(99, 100, 1)


def test_dense_and_topk_targets_load(feats_dir, tmp_path):
    lp = write_posteriors(feats_dir, tmp_path / "dense", num_classes=6)
    soft = SoftTargets(tmp_path / "dense")
    frames = {u: len(x) for u, x in lp.items()}
    soft.check(frames, num_classes=6, subsampling=1, feature_config_hash=feats_hash(feats_dir))
    utt = sorted(lp)[1]
    assert np.allclose(soft[utt].numpy(), lp[utt])

    lp = write_posteriors(feats_dir, tmp_path / "topk", num_classes=6, kind="topk_posterior", topk=3)
    soft = SoftTargets(tmp_path / "topk")
    soft.check(frames, num_classes=6, subsampling=1, feature_config_hash=feats_hash(feats_dir))
    idx, val = soft[utt]
    ref_val, ref_idx = torch.from_numpy(lp[utt]).topk(3, dim=-1)
    assert torch.equal(idx, ref_idx) and torch.allclose(val, ref_val, atol=1e-5)  # log-probs at T=1


def test_dump_temperature_is_undone(feats_dir, tmp_path):
    lp = write_posteriors(feats_dir, tmp_path / "p", num_classes=5, temperature=2.0)
    soft = SoftTargets(tmp_path / "p")
    utt = sorted(lp)[0]
    assert torch.allclose(soft[utt], torch.from_numpy(lp[utt]) * 2.0)


def test_frame_mismatch_names_scp_utt_and_numbers(feats_dir, tmp_path):
    post = tmp_path / "post"
    write_posteriors(feats_dir, post, num_classes=5, frames_delta={"spk1-u1": -2})
    frames = {u: int(n) for u, n in DataDir.load(feats_dir).utt2num_frames.items()}
    n = frames["spk1-u1"]
    soft = SoftTargets(post)
    with pytest.raises(AsrktError) as e:
        soft.check(frames, 5, 1, feats_hash(feats_dir))
    msg = str(e.value)
    assert str(post / "post.scp") in msg and "'spk1-u1'" in msg and f"{n - 2} frames" in msg and f"{n} frames" in msg
    soft.check(frames, 5, 1, feats_hash(feats_dir), tolerance=2)  # explicit tolerance accepts it


def test_subsampled_frames(feats_dir, tmp_path):
    write_posteriors(feats_dir, tmp_path / "p", num_classes=5, subsampling=3)
    frames = {u: int(n) for u, n in DataDir.load(feats_dir).utt2num_frames.items()}
    SoftTargets(tmp_path / "p").check(frames, 5, 3, feats_hash(feats_dir))
    with pytest.raises(AsrktError, match=r"post_info\.yaml: posteriors are at subsampling 3 but the model's .* 1"):
        SoftTargets(tmp_path / "p").check(frames, 5, 1, feats_hash(feats_dir))


def test_class_hash_and_missing_errors(feats_dir, tmp_path):
    frames = {u: int(n) for u, n in DataDir.load(feats_dir).utt2num_frames.items()}
    h = feats_hash(feats_dir)
    write_posteriors(feats_dir, tmp_path / "a", num_classes=5)
    with pytest.raises(AsrktError, match=r"a/post_info\.yaml: the teacher has 5 output classes but the model has 7"):
        SoftTargets(tmp_path / "a").check(frames, 7, 1, h)
    with pytest.raises(AsrktError, match=r"a/post_info\.yaml: feature config hash .* differs from bogus"):
        SoftTargets(tmp_path / "a").check(frames, 5, 1, "bogus", feats_info_path=feats_dir / "feats_info.yaml")
    # the sidecar says 7 classes but the matrices have 5
    write_posteriors(feats_dir, tmp_path / "b", num_classes=5, info_overrides={"num_classes": 7})
    with pytest.raises(AsrktError, match=r"b/post\.scp, utterance 'spk0-u0': posteriors have 5 classes but the "
                                         r"model has 7"):
        SoftTargets(tmp_path / "b").check(frames, 7, 1, h)
    # an utterance without posteriors
    lines = (tmp_path / "a" / "post.scp").read_text().splitlines()
    (tmp_path / "a" / "post.scp").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(AsrktError, match=r"a/post\.scp, utterance 'spk0-u0': no teacher posteriors for 1 of 6"):
        SoftTargets(tmp_path / "a").check(frames, 5, 1, h)
    shutil.rmtree(tmp_path / "b")
    (tmp_path / "b").mkdir()
    with pytest.raises(AsrktError, match=r"b/post_info\.yaml: missing"):
        SoftTargets(tmp_path / "b")
    (tmp_path / "b" / "post_info.yaml").write_text("kind: probs\n")
    with pytest.raises(AsrktError, match=r"missing keys: num_classes"):
        SoftTargets(tmp_path / "b")


def test_non_finite_posteriors_name_the_utterance(feats_dir, tmp_path):
    frames = {u: int(n) for u, n in DataDir.load(feats_dir).utt2num_frames.items()}
    lp = write_posteriors(feats_dir, tmp_path / "p", num_classes=5)
    lp["spk1-u0"][4, 2] = np.nan
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/p/post.1.ark,{tmp_path}/p/post.scp") as w:
        for utt in sorted(lp):
            w(utt, lp[utt])
    with pytest.raises(AsrktError, match=r"p/post\.scp, utterance 'spk1-u0': posteriors contain NaN or inf "
                                         r"\(1 values, first in frame 4\)"):
        SoftTargets(tmp_path / "p").check(frames, 5, 1, feats_hash(feats_dir))
