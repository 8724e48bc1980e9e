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
