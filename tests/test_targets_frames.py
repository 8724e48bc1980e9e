"""asrkt.targets.frames: frame-level CE on Kaldi pdf-id alignments (int32 vectors), trained by the same loop."""
from __future__ import annotations

import numpy as np
import pytest

from asrkt.data.kaldi_dir import DataDir
from asrkt.train.trainer import Trainer, TrainConfig
from asrkt.utils.config import resolve
from asrkt.utils.errors import AsrktError
from test_train_data import add_features
from test_train_trainer import read_summary


def write_alignments(data_dir, out_dir, num_pdfs=5, delta=None):
    """Labels that follow the features' first coefficient (learnable), one per frame."""
    from asrkt.io import load_scp, write_int_vectors

    out_dir.mkdir(parents=True, exist_ok=True)
    feats = load_scp(data_dir / "feats.scp")
    items = []
    for utt in DataDir.load(data_dir).utts:
        f = np.asarray(feats[utt])
        ids = (np.argsort(np.argsort(f[:, 0])) * num_pdfs // len(f)).astype(np.int32)
        if delta and utt in delta:
            ids = ids[:delta[utt]]
        items.append((utt, ids))
    write_int_vectors(f"ark,scp:{out_dir}/pdf.ark,{out_dir}/pdf.scp", items)
    (out_dir / "num_pdfs").write_text(f"{num_pdfs}\n")
    return out_dir


def cfg(**over) -> TrainConfig:
    base = {"model.type": "dnn", "model.dnn.hidden_layers": 1, "model.dnn.hidden_units": 32, "model.dnn.context": 2,
            "model.subsampling": 2, "objective": "frame_ce", "optim.lr": 0.01, "batch.max_frames": 400,
            "num_threads": 1, "log_interval_s": 0.0, "schedule.max_epochs": 4, "schedule.min_epochs": 4, "seed": 1}
    base.update(over)
    return resolve(TrainConfig, overrides=base)


def test_frame_ce_trains_and_reports_frame_error_rate(tiny_data_dir, tmp_path):
    data = add_features(tiny_data_dir)
    ali = write_alignments(data, tmp_path / "ali")
    exp = tmp_path / "exp"
    Trainer(cfg(), data, data, exp, targets_dir=ali).run()
    rows = read_summary(exp)
    assert list(rows[0])[:6] == ["epoch", "lr", "train_loss", "train_ce", "valid_loss", "valid_ce"]
    assert "valid_fer" in rows[0]
    fer = [float(r["valid_fer"]) for r in rows]
    assert fer[-1] < 80.0 and float(rows[-1]["valid_ce"]) < float(rows[0]["valid_ce"])


def test_frame_targets_errors_name_file_and_utterance(tiny_data_dir, tmp_path):
    data = add_features(tiny_data_dir)
    ali = write_alignments(data, tmp_path / "ali", delta={"spk0-u1": 3})
    with pytest.raises(AsrktError, match=r"pdf\.scp, utterance 'spk0-u1': 3 frame labels but the features have"):
        Trainer(cfg(), data, data, tmp_path / "e", targets_dir=ali).setup()
    ali = write_alignments(data, tmp_path / "ali2")
    (ali / "num_pdfs").write_text("3\n")
    with pytest.raises(AsrktError, match=r"pdf\.scp, utterance '.*': class id 4 outside \[0, 3\)"):
        Trainer(cfg(), data, data, tmp_path / "e", targets_dir=ali).setup()
    (ali / "num_pdfs").write_text("5\n")
    with pytest.raises(AsrktError, match="trains on ctc targets, but the objective is frame_ce; use the term 'ce'"):
        Trainer(cfg(**{"loss.terms": [{"name": "ctc"}]}), data, data, tmp_path / "e", targets_dir=ali).setup()


def test_topk_pdf_posteriors_for_kaldi_read_back_with_kaldi_native_io(tiny_data_dir, tmp_path):
    """A frame_ce model's top-k pdf posteriors in Kaldi's Posterior format (what nnet1 reads as --targets): read
    back with kaldi-native-io, one frame per frame of the alignment, ids and probabilities those of the model."""
    import kaldi_native_io as kni
    import torch

    from asrkt.decode.batches import inference_loader, load_checkpoint
    from asrkt.decode.search import model_log_probs
    from asrkt.io import read_int_vectors
    from asrkt.transfer.dump import dump_posteriors, finish_posteriors

    k, num_pdfs = 3, 5
    data = add_features(tiny_data_dir)
    ali = write_alignments(data, tmp_path / "ali", num_pdfs=num_pdfs)
    exp = tmp_path / "exp"
    Trainer(cfg(**{"model.subsampling": 1, "schedule.max_epochs": 1, "schedule.min_epochs": 1}), data, data, exp,
            targets_dir=ali).run()
    post = tmp_path / "post"
    post.mkdir()
    dump_posteriors(exp / "final.pt", data, f"ark,scp:{post}/post.1.ark,{post}/post.1.scp", topk=k)
    info = finish_posteriors(post, 1, data_dir=data, model_path=exp / "final.pt")
    assert info["kind"] == "topk_posterior" and info["num_classes"] == num_pdfs and info["subsampling"] == 1

    model, _ = load_checkpoint(exp / "final.pt")
    _, loader = inference_loader(data, 20000)
    expected = {}
    for batch in loader:
        with torch.inference_mode():
            lp, out_len = model_log_probs(model, batch.feats, batch.lengths)
        for b, utt in enumerate(batch.utts):
            expected[utt] = torch.softmax(lp[b, :int(out_len[b])], -1).numpy()
    alignment = {u: len(ids) for u, ids in read_int_vectors(f"scp:{ali}/pdf.scp")}

    got = {}
    reader = kni.SequentialPosteriorReader(f"scp:{post}/post.scp")
    while not reader.done:
        got[reader.key] = reader.value
        reader.next()
    reader.close()
    assert got.keys() == alignment.keys() == expected.keys()
    for utt, frames in got.items():
        assert len(frames) == alignment[utt] == len(expected[utt])  # one posterior per aligned frame
        for t, pairs in enumerate(frames):
            ids = [i for i, _ in pairs]
            probs = np.array([p for _, p in pairs])
            assert len(pairs) == k and len(set(ids)) == k and all(0 <= i < num_pdfs for i in ids)
            assert probs.sum() == pytest.approx(1.0, abs=1e-5)
            p = expected[utt][t]
            top = np.argsort(-p, kind="stable")[:k]
            assert sorted(ids) == sorted(top.tolist())  # the k most probable pdfs...
            ref = p[ids] / p[top].sum()  # ...with their probabilities renormalised over the k kept
            assert probs == pytest.approx(ref, abs=1e-4)
