"""asrkt.transfer.combine and asrkt.transfer.framerate: several teachers' posteriors combined, and teacher
posteriors brought to a student's lower frame rate (tiny data dir, seconds)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asrkt.bin.combine_posteriors import main as combine_main
from asrkt.data.kaldi_dir import DataDir
from asrkt.io import read_posteriors
from asrkt.transfer.combine import CombineOptions, combine_posteriors, dev_error_weights
from asrkt.transfer.framerate import pool_frames, select_frames
from asrkt.transfer.soft_targets import SoftTargets
from asrkt.utils.errors import AsrktError
from test_train_data import add_features, feats_hash, write_posteriors
from test_train_trainer import config

C = 6  # classes


@pytest.fixture
def data(tiny_data_dir) -> Path:
    return add_features(tiny_data_dir)


def frame_counts(data_dir: Path) -> dict[str, int]:
    return {u: int(n) for u, n in DataDir.load(data_dir).utt2num_frames.items()}


def out_probs(post_dir: Path) -> dict[str, np.ndarray]:
    """The combined distributions, read back as the trainer does (dense, or top-k made dense)."""
    soft = SoftTargets(post_dir)
    out = {}
    for utt in soft.keys:
        target = soft[utt]
        if isinstance(target, tuple):
            idx, logv = target
            p = np.zeros((idx.shape[0], C))
            np.add.at(p, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.numpy().ravel()),
                      torch.softmax(logv, -1).numpy().ravel())
            out[utt] = p
        else:
            out[utt] = torch.softmax(target.double(), -1).numpy()
    return out


def topk_probs(log_probs: np.ndarray, k: int) -> np.ndarray:
    """What a top-k teacher means: its k most probable classes, renormalised over them."""
    p = np.exp(log_probs.astype(np.float64))
    keep = np.argsort(-p, axis=1)[:, :k]
    q = np.zeros_like(p)
    np.put_along_axis(q, keep, np.take_along_axis(p, keep, 1), 1)
    return q / q.sum(1, keepdims=True)


def read_info(post_dir: Path) -> dict:
    return yaml.safe_load((post_dir / "post_info.yaml").read_text())


# ------------------------------------------------------------------------------------------------ methods
@pytest.mark.parametrize("method, weights, expected", [("average", None, (0.5, 0.5)),
                                                       ("weighted", [3.0, 1.0], (0.75, 0.25))])
def test_two_dense_teachers_give_the_weighted_mean_of_probabilities(data, tmp_path, method, weights, expected):
    la = write_posteriors(data, tmp_path / "a", C, seed=0)
    lb = write_posteriors(data, tmp_path / "b", C, seed=1, teacher_checkpoint_sha1="b" * 8)
    out = tmp_path / "ab"
    info = combine_posteriors(out, [tmp_path / "a", tmp_path / "b"], CombineOptions(method=method, weights=weights),
                              data_dir=data)
    got = out_probs(out)
    assert set(got) == set(la)
    for utt in la:
        hand = expected[0] * np.exp(la[utt].astype(np.float64)) + expected[1] * np.exp(lb[utt].astype(np.float64))
        np.testing.assert_allclose(got[utt], hand, rtol=1e-5, atol=1e-7)
    assert info["kind"] == "log_probs" and info["subsampling"] == 1 and info["num_utts"] == len(la)
    saved = read_info(out)
    assert saved["combination"]["method"] == method and saved["combination"]["weights"] == list(expected)
    assert [t["teacher_checkpoint_sha1"] for t in saved["teachers"]] == ["0123abcd", "b" * 8]
    assert [t["post_dir"] for t in saved["teachers"]] == [str((tmp_path / n).resolve()) for n in "ab"]
    # the combined dir passes the trainer's checks against the data, unchanged
    SoftTargets(out).check(frame_counts(data), C, 1, feats_hash(data))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_top_k_and_dense_teachers_combine(data, tmp_path):
    la = write_posteriors(data, tmp_path / "dense", C, seed=0)
    lb = write_posteriors(data, tmp_path / "topk", C, seed=1, kind="topk_posterior", topk=3)
    lc = write_posteriors(data, tmp_path / "topk2", C, seed=2, kind="topk_posterior", topk=2)
    combine_posteriors(tmp_path / "mixed", [tmp_path / "dense", tmp_path / "topk"])
    got = out_probs(tmp_path / "mixed")
    assert read_info(tmp_path / "mixed")["kind"] == "log_probs"  # a dense teacher in: dense out
    for utt in la:
        hand = 0.5 * np.exp(la[utt].astype(np.float64)) + 0.5 * topk_probs(lb[utt], 3)
        np.testing.assert_allclose(got[utt], hand, rtol=1e-5, atol=1e-7)
    # only top-k teachers: top-k out (k = the largest input k), the mixture's k best renormalised
    info = combine_posteriors(tmp_path / "sparse", [tmp_path / "topk", tmp_path / "topk2"])
    assert info["kind"] == "topk_posterior" and info["topk"] == 3
    got = out_probs(tmp_path / "sparse")
    stored = dict(read_posteriors(f"scp:{tmp_path}/sparse/post.scp"))
    for utt in la:
        assert all(len(frame) <= 3 for frame in stored[utt])
        np.testing.assert_allclose(got[utt], topk_probs(np.log(0.5 * topk_probs(lb[utt], 3)
                                                               + 0.5 * topk_probs(lc[utt], 2) + 1e-300), 3),
                                   rtol=1e-5, atol=1e-7)
    SoftTargets(tmp_path / "sparse").check(frame_counts(data), C, 1, feats_hash(data))


def write_teacher_exp(exp: Path, metric: str, errors: list[float], best_epoch: int) -> Path:
    """A finished teacher exp dir as the trainer leaves it: train_info.yaml, summary.tsv, final.pt."""
    exp.mkdir(parents=True)
    (exp / "train_info.yaml").write_text(yaml.safe_dump({"objective": "ctc", "metric": metric,
                                                         "best_epoch": best_epoch, "epochs": len(errors)}))
    rows = ["epoch\tlr\tvalid_loss\tvalid_" + metric]
    rows += [f"{i}\t0.001\t1.0\t{e:.4f}" for i, e in enumerate(errors, 1)]
    (exp / "summary.tsv").write_text("\n".join(rows) + "\n")
    (exp / "final.pt").write_bytes(b"not read")
    return exp / "final.pt"


def test_dev_error_weights_favour_the_better_teacher(data, tmp_path):
    good = write_teacher_exp(tmp_path / "exp" / "good", "ter", [30.0, 10.0, 11.0], best_epoch=2)
    bad = write_teacher_exp(tmp_path / "exp" / "bad", "ter", [40.0, 12.0], best_epoch=2)
    lg = write_posteriors(data, tmp_path / "pg", C, seed=0, teacher_checkpoint=str(good))
    lb = write_posteriors(data, tmp_path / "pb", C, seed=1, teacher_checkpoint=str(bad))
    info = combine_posteriors(tmp_path / "out", [tmp_path / "pb", tmp_path / "pg"],
                              CombineOptions(method="dev-error"))
    comb = info["combination"]
    assert comb["dev_errors"] == [12.0, 10.0] and comb["dev_error_metric"] == "ter"  # the best epoch's, not the last
    w_bad, w_good = comb["weights"]
    assert w_good > 0.85 > 0.15 > w_bad  # softmax(-[12, 10] / 1) = (0.119, 0.881)
    np.testing.assert_allclose([w_bad, w_good], dev_error_weights([12.0, 10.0]), atol=1e-6)
    got = out_probs(tmp_path / "out")
    utt = next(iter(lg))
    hand = w_bad * np.exp(lb[utt].astype(np.float64)) + w_good * np.exp(lg[utt].astype(np.float64))
    np.testing.assert_allclose(got[utt], hand, rtol=1e-4, atol=1e-6)
    # tau: larger = flatter; from the decode score instead; and given explicitly
    flat = combine_posteriors(tmp_path / "flat", [tmp_path / "pb", tmp_path / "pg"],
                              CombineOptions(method="dev-error", tau=100.0))["combination"]["weights"]
    assert abs(flat[0] - 0.5) < 0.01
    for exp, wer in ((good.parent, 20.0), (bad.parent, 5.0)):
        (exp / "decode_dev").mkdir()
        (exp / "decode_dev" / "score.yaml").write_text(yaml.safe_dump({"wer": wer}))
    by_wer = combine_posteriors(tmp_path / "wer", [tmp_path / "pb", tmp_path / "pg"],
                                CombineOptions(method="dev-error", dev_error_source="decode_dev"))["combination"]
    assert by_wer["dev_errors"] == [5.0, 20.0] and by_wer["weights"][0] > 0.99
    given = combine_posteriors(tmp_path / "given", [tmp_path / "pb", tmp_path / "pg"],
                               CombineOptions(method="dev-error", dev_errors=[1.0, 2.0]))["combination"]
    assert given["weights"][0] > given["weights"][1]


def test_dev_error_problems_are_clear(data, tmp_path):
    fer = write_teacher_exp(tmp_path / "fer", "fer", [10.0], best_epoch=1)
    ter = write_teacher_exp(tmp_path / "ter", "ter", [12.0], best_epoch=1)
    write_posteriors(data, tmp_path / "a", C, teacher_checkpoint=str(fer))
    write_posteriors(data, tmp_path / "b", C, teacher_checkpoint=str(ter))
    write_posteriors(data, tmp_path / "c", C)  # no teacher_checkpoint in its post_info.yaml
    dev = CombineOptions(method="dev-error")
    with pytest.raises(AsrktError, match="different metrics"):
        combine_posteriors(tmp_path / "o", [tmp_path / "a", tmp_path / "b"], dev)
    with pytest.raises(AsrktError, match=r"c/post_info\.yaml: names no teacher_checkpoint"):
        combine_posteriors(tmp_path / "o", [tmp_path / "a", tmp_path / "c"], dev)
    (tmp_path / "ter" / "train_info.yaml").unlink()
    with pytest.raises(AsrktError, match=r"ter/train_info\.yaml: missing"):
        combine_posteriors(tmp_path / "o", [tmp_path / "a", tmp_path / "b"], dev)
    with pytest.raises(AsrktError, match=r"--weights: expected one value per input post dir \(2\), got 3"):
        combine_posteriors(tmp_path / "o", [tmp_path / "a", tmp_path / "b"],
                           CombineOptions(method="weighted", weights=[1, 2, 3]))
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ frame rates
def test_pool_and_select_three_to_one_on_a_known_matrix():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0],   # group 0
                  [0.2, 0.8], [0.4, 0.6], [0.6, 0.4],   # group 1
                  [0.9, 0.1]])                           # group 2: one frame (7 is not a multiple of 3)
    np.testing.assert_allclose(pool_frames(p, 3), [[0.5, 0.5], [0.4, 0.6], [0.9, 0.1]])
    np.testing.assert_allclose(select_frames(p, 3), [[0.5, 0.5], [0.4, 0.6], [0.9, 0.1]])  # frames 1, 4, 6
    np.testing.assert_allclose(pool_frames(p[:5], 3), [[0.5, 0.5], [0.3, 0.7]])  # short group: its 2 frames
    np.testing.assert_allclose(select_frames(p[:5], 3), [[0.5, 0.5], [0.4, 0.6]])  # frame 4, the last
    np.testing.assert_allclose(pool_frames(p, 2), [[0.75, 0.25], [0.1, 0.9], [0.5, 0.5], [0.9, 0.1]])
    assert pool_frames(p, 1) is p


@pytest.mark.parametrize("conversion", ["pool", "select"])
def test_conversion_gives_the_students_frame_count(data, tmp_path, conversion):
    from asrkt.models import build_model
    from asrkt.models.config import ModelConfig

    counts = frame_counts(data)
    assert {n % 3 for n in counts.values()} >= {1, 2}  # lengths not divisible by 3 are covered
    la = write_posteriors(data, tmp_path / "t1", C, seed=0)  # a 10 ms teacher
    info = combine_posteriors(tmp_path / "s3", [tmp_path / "t1"],
                              CombineOptions(to_subsampling=3, conversion=conversion), data_dir=data)
    assert info["subsampling"] == 3 and info["frame_shift_ms"] == pytest.approx(30.0)
    assert info["combination"]["conversion"] == conversion
    student = build_model(ModelConfig(type="lstm", subsampling=3), input_dim=40, num_classes=C)
    want = dict(zip(counts, student.output_lengths(torch.tensor(list(counts.values()))).tolist()))
    got = out_probs(tmp_path / "s3")
    assert {u: len(p) for u, p in got.items()} == want
    convert = pool_frames if conversion == "pool" else select_frames
    for utt, lp in la.items():
        np.testing.assert_allclose(got[utt], convert(np.exp(lp.astype(np.float64)), 3), rtol=1e-5, atol=1e-7)
    SoftTargets(tmp_path / "s3").check(counts, C, 3, feats_hash(data))  # the trainer's check, tolerance 0
    with pytest.raises(AsrktError, match=r"t1/post_info\.yaml: posteriors are at subsampling 1 .*"
                                         r"combine_posteriors --to-subsampling 3"):
        SoftTargets(tmp_path / "t1").check(counts, C, 3, feats_hash(data))  # unconverted: refused, says how
    # a 30 ms teacher and a 10 ms teacher for a 30 ms student
    lb = write_posteriors(data, tmp_path / "t3", C, seed=1, subsampling=3)
    with pytest.raises(AsrktError, match=r"t3/post_info\.yaml: subsampling 3 here but 1 .*--to-subsampling"):
        combine_posteriors(tmp_path / "x", [tmp_path / "t1", tmp_path / "t3"])
    with pytest.raises(AsrktError, match=r"t3/post_info\.yaml: posteriors at subsampling 3 cannot be converted to "
                                         r"subsampling 2 \(a coarser teacher"):
        combine_posteriors(tmp_path / "x", [tmp_path / "t1", tmp_path / "t3"], CombineOptions(to_subsampling=2))
    combine_posteriors(tmp_path / "mix", [tmp_path / "t1", tmp_path / "t3"], CombineOptions(to_subsampling=3),
                       data_dir=data)
    got = out_probs(tmp_path / "mix")
    for utt in la:
        hand = 0.5 * pool_frames(np.exp(la[utt].astype(np.float64)), 3) + 0.5 * np.exp(lb[utt].astype(np.float64))
        np.testing.assert_allclose(got[utt], hand, rtol=1e-5, atol=1e-7)


def test_a_wrong_teacher_length_is_caught_against_the_student(data, tmp_path):
    utt = sorted(frame_counts(data))[1]
    # 2 extra teacher frames at subsampling 1 still pool to the right count when the feature length leaves
    # room in the last group; 3 never do
    write_posteriors(data, tmp_path / "t", C, frames_delta={utt: 3})
    with pytest.raises(AsrktError, match=rf"utterance '{utt}': .* posterior frames at subsampling 3 but the "
                                         r"student's output has \d+ \(ceil\(\d+ feature frames / 3\)\)"):
        combine_posteriors(tmp_path / "o", [tmp_path / "t"], CombineOptions(to_subsampling=3), data_dir=data)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ mismatches
def test_mismatched_teachers_are_clear_errors_naming_the_utterance(data, tmp_path):
    utts = sorted(frame_counts(data))
    write_posteriors(data, tmp_path / "a", C)
    write_posteriors(data, tmp_path / "frames", C, frames_delta={utts[2]: -1})
    write_posteriors(data, tmp_path / "classes", C + 1)
    write_posteriors(data, tmp_path / "feats", C, feature_config_hash="other")
    write_posteriors(data, tmp_path / "missing", C)
    scp = tmp_path / "missing" / "post.scp"
    scp.write_text("".join(line for line in scp.read_text().splitlines(True) if not line.startswith(utts[3])))

    def combine(other):
        combine_posteriors(tmp_path / "o", [tmp_path / "a", tmp_path / other])

    with pytest.raises(AsrktError, match=rf"frames/post\.scp, utterance '{utts[2]}': \d+ frames at subsampling 1 "
                                         r"\(\d+ at subsampling 1\) here but \d+ .* in .*a/post\.scp"):
        combine("frames")
    with pytest.raises(AsrktError, match=rf"classes/post_info\.yaml: {C + 1} classes here but {C} in"):
        combine("classes")
    with pytest.raises(AsrktError, match="feature config hash other here but"):
        combine("feats")
    with pytest.raises(AsrktError, match=rf"missing/post\.scp, utterance '{utts[3]}': no posteriors for 1 "
                                         r"utterance\(s\) that .*a/post\.scp has"):
        combine("missing")
    with pytest.raises(AsrktError, match="given twice"):
        combine("a")
    # a bad file inside one teacher's archive: its class count
    write_posteriors(data, tmp_path / "liar", C + 1, info_overrides={"num_classes": C})
    with pytest.raises(AsrktError, match=rf"liar/post\.scp, utterance '{utts[0]}': posteriors have {C + 1} classes "
                                         rf"but .*post_info\.yaml says {C}"):
        combine("liar")
    assert not (tmp_path / "o").exists()


def test_teachers_dumped_at_another_temperature_are_read_at_temperature_one(data, tmp_path):
    la = write_posteriors(data, tmp_path / "t1", C)
    write_posteriors(data, tmp_path / "t2", C)
    # the same teacher stored as log_softmax(z / 2) with temperature 2 in its sidecar
    from asrkt.io import write_matrices

    write_matrices(f"ark,scp:{tmp_path}/t2/post.1.ark,{tmp_path}/t2/post.scp",
                   {u: torch.log_softmax(torch.from_numpy(lp) / 2, -1).numpy() for u, lp in la.items()})
    info = yaml.safe_load((tmp_path / "t2" / "post_info.yaml").read_text())
    (tmp_path / "t2" / "post_info.yaml").write_text(yaml.safe_dump({**info, "temperature": 2.0}))
    combine_posteriors(tmp_path / "o", [tmp_path / "t1", tmp_path / "t2"])
    got = out_probs(tmp_path / "o")
    for utt, lp in la.items():
        np.testing.assert_allclose(got[utt], np.exp(lp.astype(np.float64)), rtol=1e-4, atol=1e-6)
    assert read_info(tmp_path / "o")["temperature"] == 1.0


# ------------------------------------------------------------------------------------------------ output dir
def test_output_is_resumable_and_refuses_other_contents(data, tmp_path, capsys):
    write_posteriors(data, tmp_path / "a", C, seed=0)
    write_posteriors(data, tmp_path / "b", C, seed=1)
    out = tmp_path / "out"
    args = [str(out), str(tmp_path / "a"), str(tmp_path / "b")]
    combine_main(args)
    ark = out / "post.1.ark"
    stamp = ark.stat().st_mtime_ns
    scp_line = (out / "post.scp").read_text().splitlines()[0]
    assert scp_line.split()[1].startswith(os.path.abspath(ark) + ":")  # the final archive, absolute
    combine_main(args)  # finished with the same inputs and options: kept
    assert ark.stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit) as e:
        combine_main(["--method", "weighted", "--weights", "2,1"] + args)
    assert e.value.code == 1
    assert "holds other posteriors" in capsys.readouterr().err and ark.stat().st_mtime_ns == stamp
    combine_main(["--method", "weighted", "--weights", "2,1", "--overwrite", "true"] + args)
    assert read_info(out)["combination"]["weights"] == pytest.approx([2 / 3, 1 / 3], abs=1e-6)
    with pytest.raises(SystemExit):
        combine_main([str(tmp_path / "a"), str(tmp_path / "b")])  # the output dir is an input
    (tmp_path / "notpost").mkdir()
    (tmp_path / "notpost" / "precious.txt").write_text("x")
    with pytest.raises(SystemExit):
        combine_main([str(tmp_path / "notpost"), str(tmp_path / "a")])
    assert "is not a posterior dir" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ------------------------------------------------------------------------------------------------ training
def test_a_student_trains_on_two_combined_teachers_at_its_frame_rate(data, tmp_path):
    from asrkt.train.trainer import Trainer

    write_posteriors(data, tmp_path / "t1", C, seed=0)  # 10 ms teacher, dense
    write_posteriors(data, tmp_path / "t3", C, seed=1, subsampling=3, kind="topk_posterior", topk=4)  # 30 ms
    opts = CombineOptions(method="weighted", weights=[0.6, 0.4], to_subsampling=3)
    for name in ("train", "valid"):  # as a recipe would for its two sets: same combination, same identity
        combine_posteriors(tmp_path / f"post_{name}", [tmp_path / "t1", tmp_path / "t3"], opts, data_dir=data)
    cfg = config(**{"loss.kd_alpha": 1.0, "loss.temperature": 2.0, "model.subsampling": 3, "optim.lr": 0.05,
                    "schedule.max_epochs": 3, "schedule.min_epochs": 3, "batch.max_frames": 120})
    trainer = Trainer(cfg, data, data, tmp_path / "exp", lang_dir=None, train_post=tmp_path / "post_train",
                      valid_post=tmp_path / "post_valid")
    trainer.setup()
    initial = trainer.validate().value("kd")
    trainer.run()
    rows = (tmp_path / "exp" / "summary.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    soft = [float(r.split("\t")[header.index("valid_kd")]) for r in rows[1:]]
    assert len(soft) == 3 and soft[-1] < initial
