"""After training: posterior dumps (dense and top-k), finishing a posterior dir, greedy decoding, plots.

Everything runs on a tiny synthetic setup: random 13-dim features with real CMVN stats and feats_info.yaml,
a char lang dir trained on the transcripts, and small randomly-initialised models.
"""
from __future__ import annotations

import hashlib
import re

import kaldi_native_io
import kaldiio
import numpy as np
import pytest
import torch
import yaml

from asrkt.bin import decode as decode_bin
from asrkt.bin import dump_posteriors as dump_bin
from asrkt.bin import finish_posteriors as finish_bin
from asrkt.bin import plot_curves as curves_bin
from asrkt.bin import plot_posteriorgram as pg_bin
from asrkt.data.kaldi_dir import c_sorted, read_table, write_data_dir
from asrkt.data.subset import split_data_dir
from asrkt.decode.search import DecodeConfig
from asrkt.decode.run import decode_data_dir
from asrkt.features.cmvn import CmvnApplier, compute_cmvn_stats
from asrkt.features.fbank import FbankConfig
from asrkt.features.info import make_feats_info, read_feats_info, write_feats_info
from asrkt.io import MatrixWriter
from asrkt.models import DnnConfig, LstmConfig, ModelConfig, build_model, save_checkpoint
from asrkt.score.wer import compute_wer
from asrkt.targets import Tokenizer, train_tokenizer
from asrkt.transfer.dump import dump_posteriors, finish_posteriors
from asrkt.transfer.soft_targets import PosteriorInfo, SoftTargets
from asrkt.utils.errors import AsrktError

DIM = 13
WORDS = ("ONE", "TWO", "THREE", "FOUR")
WER_LINE = re.compile(r"^%WER \d+\.\d\d \[ \d+ / \d+, \d+ ins, \d+ del, \d+ sub \] (.+)$")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """data dir (6 utts, 2 speakers, 23..95 frames), lang dir, DNN teacher and LSTM student checkpoints."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    feats, text, utt2spk = {}, {}, {}
    for s in range(2):
        for u in range(3):
            utt = f"spk{s}-u{u}"
            feats[utt] = (rng.standard_normal((23 + 25 * u + s, DIM)) + s).astype(np.float32)
            text[utt] = " ".join(rng.choice(WORDS, size=1 + u))
            utt2spk[utt] = f"spk{s}"
    data = root / "data"
    data.mkdir()
    with MatrixWriter(f"ark,scp:{data}/feats.ark,{data}/feats.scp") as w:
        for utt in c_sorted(feats):
            w.write(utt, feats[utt])
    with MatrixWriter(f"ark,scp:{data}/cmvn.ark,{data}/cmvn.scp") as w:
        for spk in ("spk0", "spk1"):
            w.write(spk, compute_cmvn_stats(f for u, f in feats.items() if utt2spk[u] == spk))
    write_data_dir(data, wav_scp={u: "/dev/null" for u in feats}, text=text, utt2spk=utt2spk,
                   utt2num_frames={u: str(f.shape[0]) for u, f in feats.items()})
    write_feats_info(data, make_feats_info(FbankConfig(num_mel_bins=DIM), len(feats),
                                           sum(f.shape[0] for f in feats.values())))
    tok = train_tokenizer(text.values(), root / "lang", kind="char")
    torch.manual_seed(0)
    teacher = root / "teacher.pt"
    save_checkpoint(teacher, build_model(ModelConfig(type="dnn", dnn=DnnConfig(hidden_layers=1, hidden_units=16,
                                                                               context=2)), DIM, tok.num_classes))
    student = root / "student.pt"
    save_checkpoint(student, build_model(ModelConfig(type="lstm", subsampling=2, lstm=LstmConfig(
        num_layers=1, cells=8, targets_delay=2)), DIM, tok.num_classes))
    return {"root": root, "data": data, "lang": root / "lang", "teacher": teacher, "student": student,
            "feats": feats, "text": text, "num_classes": tok.num_classes}


def direct_outputs(model_path, data_dir, utt):
    """Logits of one utterance, forwarded alone (no batching, no padding)."""
    from asrkt.models import load_model

    model, _ = load_model(model_path)
    raw = kaldiio.load_scp(str(data_dir / "feats.scp"))[utt]
    x = torch.from_numpy(CmvnApplier(data_dir)(utt, raw)).unsqueeze(0)
    with torch.inference_mode():
        logits, n = model(x, torch.tensor([x.shape[1]]))
    return logits[0, :int(n[0])]


# ------------------------------------------------------------------------------------------------ dumping
def test_dense_dump_readable_by_kaldiio(setup, tmp_path):
    out = tmp_path / "post"
    stats = dump_posteriors(setup["teacher"], setup["data"], f"ark,scp:{out}/post.1.ark,{out}/post.1.scp",
                            batch_frames=120)  # several batches, padding inside each
    post = kaldiio.load_scp(str(out / "post.1.scp"))
    assert sorted(post) == sorted(setup["feats"])
    for utt, feats in setup["feats"].items():
        m = post[utt]
        assert m.dtype == np.float32 and m.shape == (feats.shape[0], setup["num_classes"])
        np.testing.assert_allclose(np.exp(m).sum(axis=1), 1.0, atol=1e-5)  # log-probabilities
        expected = torch.log_softmax(direct_outputs(setup["teacher"], setup["data"], utt), -1).numpy()
        np.testing.assert_allclose(m, expected, atol=1e-5)  # batching and padding change nothing
    assert stats.utts == 6 and stats.frames == sum(f.shape[0] for f in setup["feats"].values())
    assert stats.bytes == (out / "post.1.ark").stat().st_size
    info = yaml.safe_load((out / "post.1.info.yaml").read_text())
    assert info["kind"] == "log_probs" and info["num_utts"] == 6


def test_logits_output_and_subsampled_model(setup, tmp_path):
    out = tmp_path / "post"
    dump_posteriors(setup["student"], setup["data"], f"ark,scp:{out}/post.1.ark,{out}/post.1.scp", output="logits")
    post = kaldiio.load_scp(str(out / "post.1.scp"))
    for utt, feats in setup["feats"].items():
        assert post[utt].shape == (-(-feats.shape[0] // 2), setup["num_classes"])  # ceil(T / subsampling)
        np.testing.assert_allclose(post[utt], direct_outputs(setup["student"], setup["data"], utt).numpy(),
                                   atol=1e-5)
    info = yaml.safe_load((out / "post.1.info.yaml").read_text())
    assert (info["kind"], info["subsampling"], info["frame_shift_ms"]) == ("logits", 2, 20.0)


def test_topk_dump_readable_by_kaldi_native_io(setup, tmp_path):
    out, k = tmp_path / "post", 3
    dump_bin.main(["--model", str(setup["teacher"]), "--data-dir", str(setup["data"]), "--topk", str(k),
                   "--wspecifier", f"ark,scp:{out}/post.1.ark,{out}/post.1.scp"])
    seen = 0
    for utt, post in kaldi_native_io.SequentialPosteriorReader(f"scp:{out}/post.1.scp"):
        log_probs = torch.log_softmax(direct_outputs(setup["teacher"], setup["data"], utt), -1).numpy()
        assert len(post) == log_probs.shape[0]
        for t, frame in enumerate(post):
            ids = [i for i, _ in frame]
            weights = np.array([w for _, w in frame])
            assert len(frame) == k
            assert weights.sum() == pytest.approx(1.0, abs=1e-5)  # renormalised over the k kept
            assert set(ids) == set(np.argsort(-log_probs[t])[:k].tolist())
            p = np.exp(log_probs[t, ids])
            np.testing.assert_allclose(weights, p / p.sum(), atol=1e-5)
        seen += 1
    assert seen == 6
    info = yaml.safe_load((out / "post.1.info.yaml").read_text())
    assert (info["kind"], info["topk"]) == ("topk_posterior", k)


def test_missing_checkpoint_is_named(setup, tmp_path, capsys):
    missing = tmp_path / "exp" / "teacher" / "final.pt"
    with pytest.raises(AsrktError, match=re.escape(f"{missing}: teacher checkpoint not found")):
        dump_posteriors(missing, setup["data"], f"ark,scp:{tmp_path}/p.ark,{tmp_path}/p.scp")
    with pytest.raises(SystemExit) as e:
        dump_bin.main(["--model", str(missing), "--data-dir", str(setup["data"]),
                       "--wspecifier", f"ark,scp:{tmp_path}/p.ark,{tmp_path}/p.scp"])
    assert e.value.code == 1
    assert f"ERROR: {missing}: teacher checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "p.ark").exists() and not (tmp_path / "p.scp").exists()


def test_bad_options_are_errors(setup, tmp_path):
    wspec = f"ark,scp:{tmp_path}/p.ark,{tmp_path}/p.scp"
    with pytest.raises(AsrktError, match="--topk 999 exceeds the teacher's"):
        dump_posteriors(setup["teacher"], setup["data"], wspec, topk=999)
    with pytest.raises(AsrktError, match="--output must be one of"):
        dump_posteriors(setup["teacher"], setup["data"], wspec, output="probs")


def _dump_jobs(setup, post_dir, nj=2, **kw):
    for j, job_dir in enumerate(split_data_dir(setup["data"], nj), 1):
        dump_posteriors(setup["teacher"], job_dir, f"ark,scp:{post_dir}/post.{j}.ark,{post_dir}/post.{j}.scp", **kw)


def test_finish_posteriors_info_and_merged_scp(setup, tmp_path):
    post_dir = tmp_path / "post_train"
    _dump_jobs(setup, post_dir)
    finish_bin.main(["--data-dir", str(setup["data"]), "--model", str(setup["teacher"]), str(post_dir), "2"])
    scp = read_table(post_dir / "post.scp")  # checks C order
    assert list(scp) == c_sorted(setup["feats"])
    info = yaml.safe_load((post_dir / "post_info.yaml").read_text())
    frames = sum(f.shape[0] for f in setup["feats"].values())
    assert info["kind"] == "log_probs" and info["num_classes"] == setup["num_classes"] and info["topk"] == 0
    assert info["frame_shift_ms"] == 10.0 and info["subsampling"] == 1 and info["temperature"] == 1.0
    assert info["feature_config_hash"] == read_feats_info(setup["data"])["config_hash"]
    assert info["teacher_checkpoint_sha1"] == hashlib.sha1(setup["teacher"].read_bytes()).hexdigest()
    assert info["num_utts"] == 6 and info["num_frames"] == frames and info["nj"] == 2
    assert info["bytes"] == sum((post_dir / f"post.{j}.ark").stat().st_size for j in (1, 2))
    # what the trainer reads: the sidecar parses and the targets pass its frame/class checks
    assert PosteriorInfo.load(post_dir / "post_info.yaml").kind == "log_probs"
    soft = SoftTargets(post_dir)
    soft.check({u: f.shape[0] for u, f in setup["feats"].items()}, num_classes=setup["num_classes"], subsampling=1,
               feature_config_hash=info["feature_config_hash"])
    assert kaldiio.load_scp(str(post_dir / "post.scp"))["spk1-u2"].shape == setup["feats"]["spk1-u2"].shape[:1] + (
        setup["num_classes"],)


def test_finish_topk(setup, tmp_path):
    post_dir = tmp_path / "post"
    _dump_jobs(setup, post_dir, topk=2)
    info = finish_posteriors(post_dir, 2)
    assert info["kind"] == "topk_posterior" and info["topk"] == 2
    keys = [k for k, _ in kaldi_native_io.SequentialPosteriorReader(f"scp:{post_dir}/post.scp")]
    assert keys == c_sorted(setup["feats"])


def test_finish_failures(setup, tmp_path):
    post_dir = tmp_path / "post"
    _dump_jobs(setup, post_dir)
    with pytest.raises(AsrktError, match=re.escape(f"{post_dir}/post.3.scp: missing: dump job 3 of 3")):
        finish_posteriors(post_dir, 3)
    other = tmp_path / "other.pt"
    save_checkpoint(other, build_model(ModelConfig(type="dnn", dnn=DnnConfig(hidden_layers=1, hidden_units=4)),
                                       DIM, setup["num_classes"]))
    with pytest.raises(AsrktError, match=re.escape(f"{other}: the teacher checkpoint changed")):
        finish_posteriors(post_dir, 2, model_path=other)
    assert not (post_dir / "post_info.yaml").exists() and not (post_dir / "post.scp").exists()
    # a data dir with an utterance the dump did not cover
    bigger = tmp_path / "bigger"
    feats = dict(read_table(setup["data"] / "feats.scp"))
    feats["spk1-u9"] = feats["spk1-u0"]
    write_data_dir(bigger, wav_scp={u: "/dev/null" for u in feats}, text=None,
                   utt2spk={u: u.split("-")[0] for u in feats}, feats_scp=feats)
    (bigger / "feats_info.yaml").write_text((setup["data"] / "feats_info.yaml").read_text())
    with pytest.raises(AsrktError, match="utterance 'spk1-u9': 1 utterances of .*bigger/feats.scp have no posteriors"):
        finish_posteriors(post_dir, 2, data_dir=bigger)
    assert not (post_dir / "post.scp").exists()
    # jobs that dumped different things
    dump_posteriors(setup["teacher"], setup["data"] / "split2" / "2",
                    f"ark,scp:{post_dir}/post.2.ark,{post_dir}/post.2.scp", output="logits")
    with pytest.raises(AsrktError, match=re.escape(f"{post_dir}/post.2.info.yaml: jobs disagree on kind")):
        finish_posteriors(post_dir, 2)


# ------------------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("model_key", ["teacher", "student"])
def test_greedy_decode_end_to_end(setup, tmp_path, model_key):
    out = tmp_path / "exp" / "decode_test"
    decode_bin.main(["--model", str(setup[model_key]), "--data-dir", str(setup["data"]), "--lang-dir",
                     str(setup["lang"]), "--out-dir", str(out), "--batch-frames", "100"])
    for name in ("hyp.txt", "ref.txt", "per_utt.txt", "wer.txt", "score.yaml", "decode_config.yaml"):
        assert (out / name).is_file(), name
    hyps = read_table(out / "hyp.txt")  # Kaldi text, C-sorted (read_table checks)
    refs = read_table(out / "ref.txt")
    assert refs == setup["text"] and list(hyps) == c_sorted(setup["text"])
    # hypotheses are the greedy CTC path of each utterance forwarded alone
    tok = Tokenizer.load(setup["lang"])
    for utt in setup["text"]:
        best = torch.unique_consecutive(direct_outputs(setup[model_key], setup["data"], utt).argmax(-1))
        assert hyps[utt] == tok.decode(best[best != 0].tolist())
    lines = (out / "wer.txt").read_text().splitlines()
    m = WER_LINE.match(lines[0])
    assert m and m.group(1) == str(out)
    assert lines[1].startswith("%SER ") and lines[2].startswith("%CER ")
    assert lines[3] == "Scored 6 sentences, 0 not present in hyp."
    score = yaml.safe_load((out / "score.yaml").read_text())
    expected = compute_wer(refs, hyps)
    assert (score["errors"], score["words"], score["ins"], score["del"], score["sub"]) == (
        expected.errors, expected.words, expected.ins, expected.dels, expected.subs)
    assert score["wer"] == pytest.approx(expected.wer, abs=1e-3) and score["cer"] == pytest.approx(expected.cer,
                                                                                                   abs=1e-3)
    assert score["utts"] == 6 and score["kaldi_line"] == lines[0]
    assert score["model_sha1"] == hashlib.sha1(setup[model_key].read_bytes()).hexdigest()
    assert score["audio_s"] == pytest.approx(sum(f.shape[0] for f in setup["feats"].values()) / 100)
    assert score["decode_time_s"] > 0 and score["rtf"] > 0
    per_utt = (out / "per_utt.txt").read_text().splitlines()
    assert len(per_utt) == 4 * 6 and per_utt[0].startswith("spk0-u0 #err ")


def test_decode_without_text_writes_hypotheses_only(setup, tmp_path):
    data = tmp_path / "notext"
    split = split_data_dir(setup["data"], 1)[0]
    import shutil

    shutil.copytree(split, data)
    (data / "text").unlink()
    score = decode_data_dir(setup["teacher"], data, setup["lang"], tmp_path / "dec", DecodeConfig())
    assert "wer" not in score and len(read_table(tmp_path / "dec" / "hyp.txt")) == 6
    assert not (tmp_path / "dec" / "wer.txt").exists()


def test_decode_errors(setup, tmp_path):
    with pytest.raises(AsrktError, match=re.escape(f"{tmp_path}/none.pt: model checkpoint not found")):
        decode_data_dir(tmp_path / "none.pt", setup["data"], setup["lang"], tmp_path / "d")
    other_lang = tmp_path / "lang2"
    train_tokenizer(["XYZ"], other_lang, kind="char")
    with pytest.raises(AsrktError, match="classes but the model .* outputs"):
        decode_data_dir(setup["teacher"], setup["data"], other_lang, tmp_path / "d")
    with pytest.raises(AsrktError, match="unknown decoding method 'beam'"):
        decode_data_dir(setup["teacher"], setup["data"], setup["lang"], tmp_path / "d", DecodeConfig(method="beam"))
    assert not (tmp_path / "d" / "score.yaml").exists()


# ------------------------------------------------------------------------------------------------ plots
def _check_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100


def test_posteriorgram_dense_topk_and_model(setup, tmp_path):
    dense, topk = tmp_path / "exp" / "teacher" / "post_dev", tmp_path / "exp" / "teacher" / "post_topk"
    _dump_jobs(setup, dense, nj=1)
    finish_posteriors(dense, 1)
    _dump_jobs(setup, topk, nj=1, topk=3)
    finish_posteriors(topk, 1)
    out = tmp_path / "pg.png"
    pg_bin.main(["--utt", "spk1-u2", "--lang-dir", str(setup["lang"]), "--post-scps", str(dense / "post.scp"),
                 str(topk / "post.scp"), "--models", str(setup["student"]), "--data-dir", str(setup["data"]),
                 "--out", str(out)])
    _check_png(out)
    probs, shift = pg_bin.posteriors_from_scp(topk / "post.scp", "spk1-u2")
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs > 0).sum(1).max() == 3 and shift == 10.0
    probs, shift = pg_bin.posteriors_from_model(setup["student"], setup["data"], "spk1-u2")
    assert probs.shape == (-(-setup["feats"]["spk1-u2"].shape[0] // 2), setup["num_classes"]) and shift == 20.0
    assert pg_bin.default_label(dense / "post.scp") == "teacher (post_dev)"
    with pytest.raises(AsrktError, match="utterance 'nope': utterance not in the posterior script"):
        pg_bin.posteriors_from_scp(dense / "post.scp", "nope")


def test_plot_curves(tmp_path, monkeypatch):
    header = "epoch\tlr\ttrain_loss\ttrain_hard\ttrain_soft\tvalid_loss\tvalid_hard\tvalid_soft\tvalid_ter\t" \
             "frames_per_s\tepoch_time_s\tdecision\tbad_batches\n"
    for name, rows in (("a", [(1, 2.0, 1.8, 60.0, "accepted"), (2, 1.5, 1.9, 55.0, "rejected")]),
                       ("b", [(1, 3.0, 2.5, 80.0, "accepted")])):
        d = tmp_path / name
        d.mkdir()
        (d / "summary.tsv").write_text(header + "".join(
            f"{e}\t0.001\t{t}\t{t}\tnan\t{v}\t{v}\tnan\t{ter}\t1000\t10.0\t{dec}\t0\n" for e, t, v, ter, dec in rows))
    out = tmp_path / "curves.png"
    curves_bin.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    _check_png(out)
    with pytest.raises(AsrktError, match=re.escape(f"{tmp_path / 'c'}/summary.tsv: training summary not found")):
        curves_bin.plot_curves([tmp_path / "c"], out)
    # One loss term instead of the total: the dev curve drawn is valid_<term>; a term not trained is one error.
    import matplotlib.pyplot as plt

    drawn, plot = [], plt.Axes.plot
    monkeypatch.setattr(plt.Axes, "plot", lambda self, *a, **k: drawn.append(list(a[1])) or plot(self, *a, **k))
    curves_bin.main([str(tmp_path / "a"), "--term", "hard", "--log-loss", "--out", str(tmp_path / "hard.png")])
    _check_png(tmp_path / "hard.png")
    assert [1.8, 1.9] in drawn and [2.0, 1.5] in drawn
    with pytest.raises(AsrktError, match=re.escape("no column valid_pkt (loss term 'pkt' not trained there; its "
                                                   "terms: hard, soft)")):
        curves_bin.plot_curves([tmp_path / "a"], out, term="pkt")
    # The hybrid objective's dev error rate is the frame error rate (valid_fer): drawn and named as such.
    fer = tmp_path / "fer"
    fer.mkdir()
    (fer / "summary.tsv").write_text((tmp_path / "a" / "summary.tsv").read_text().replace("valid_ter", "valid_fer"))
    drawn.clear()
    titles, set_title = [], plt.Axes.set_title
    monkeypatch.setattr(plt.Axes, "set_title", lambda self, t, **k: titles.append(t) or set_title(self, t, **k))
    curves_bin.plot_curves([fer], tmp_path / "fer.png")
    assert [60.0, 55.0] in drawn and "dev FER (frame classification, hybrid)" in titles
