"""asrkt.train.trainer and asrkt.bin.train on a tiny data dir with tiny models (seconds per test)."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from asrkt.train.reporting import summary_columns
from asrkt.train.trainer import Trainer, TrainConfig
from asrkt.utils.config import resolve
from asrkt.utils.errors import AsrktError
from test_train_data import add_features, make_lang, write_posteriors

TINY_LSTM = {"model.type": "lstm", "model.lstm.num_layers": 1, "model.lstm.cells": 16,
             "model.lstm.targets_delay": 2, "model.lstm.dropout": 0.1}
TINY_DNN = {"model.type": "dnn", "model.dnn.hidden_layers": 1, "model.dnn.hidden_units": 32,
            "model.dnn.context": 1}


def config(**overrides) -> TrainConfig:
    base = {**TINY_LSTM, "optim.lr": 0.01, "batch.max_frames": 250, "num_threads": 1, "log_interval_s": 0.0,
            "schedule.max_epochs": 2, "seed": 7}
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return resolve(TrainConfig, overrides=base)


@pytest.fixture
def setup(tiny_data_dir, tmp_path):
    """(data dir with features, lang dir); the data dir serves as train and dev set."""
    data = add_features(tiny_data_dir)
    return data, make_lang(data, tmp_path / "lang")


def read_summary(exp: Path) -> list[dict]:
    with open(exp / "summary.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def final_state(exp: Path) -> dict:
    from asrkt.models import load_model

    model, _ = load_model(exp / "final.pt")
    return model.state_dict()


def test_ctc_training_writes_the_exp_folder_and_summary(setup, tmp_path):
    data, lang = setup
    exp = tmp_path / "exp"
    result = Trainer(config(**TINY_DNN, **{"schedule.max_epochs": 3}), data, data, exp, lang_dir=lang).run()
    rows = read_summary(exp)
    # only the active term (ctc) and the objective's metric: no "soft nan" column for a run without a teacher
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_ctc", "valid_loss", "valid_ctc", "valid_ter",
                             "frames_per_s", "epoch_time_s", "decision", "bad_batches"]
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and result["epochs"] == 3
    assert all(r["decision"] in ("accepted", "rejected") for r in rows)
    assert float(rows[0]["valid_ctc"]) > 0 and float(rows[0]["valid_loss"]) == float(rows[0]["valid_ctc"])
    assert 0 <= float(rows[-1]["valid_ter"]) and float(rows[0]["frames_per_s"]) > 0
    best = result["best_epoch"]
    assert os.readlink(exp / "final.pt") == f"checkpoints/epoch_{best}.model.pt"
    assert (exp / "config.yaml").is_file() and (exp / "train_curves.png").stat().st_size > 1000
    # keep_checkpoints=2: only the two newest full checkpoints stay
    assert sorted(p.name for p in (exp / "checkpoints").glob("epoch_?.pt")) == ["epoch_2.pt", "epoch_3.pt"]
    # ... and the per-epoch model files too: the newest two and the chosen one
    models = sorted(p.name for p in (exp / "checkpoints").glob("epoch_*.model.pt"))
    assert len(models) <= 3 and f"epoch_{best}.model.pt" in models
    info = yaml.safe_load((exp / "train_info.yaml").read_text())
    assert info["loss_terms"] == {"ctc": 1.0} and info["epochs"] == 3 and info["best_epoch"] == best
    assert not (exp / ".done").exists()


class Interrupted(Trainer):
    """Dies in the middle of epoch 3, as a killed job would."""

    def train_epoch(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return super().train_epoch(epoch)


@pytest.mark.parametrize("kd_alpha", [0.0, 0.5])
def test_resume_after_interruption_gives_the_same_result(setup, tmp_path, kd_alpha):
    data, lang = setup
    post = tmp_path / "post"
    write_posteriors(data, post, num_classes=len((lang / "tokens.txt").read_text().splitlines()))
    cfg = config(**{"schedule.max_epochs": 3, "schedule.min_epochs": 3, "loss.kd_alpha": kd_alpha})
    kwargs = dict(lang_dir=lang, train_post=post if kd_alpha else None, valid_post=post if kd_alpha else None)
    Trainer(cfg, data, data, tmp_path / "straight", **kwargs).run()
    with pytest.raises(KeyboardInterrupt):
        Interrupted(cfg, data, data, tmp_path / "resumed", **kwargs).run()
    assert [r["epoch"] for r in read_summary(tmp_path / "resumed")] == ["1", "2"]
    Trainer(cfg, data, data, tmp_path / "resumed", **kwargs).run()
    a, b = read_summary(tmp_path / "straight"), read_summary(tmp_path / "resumed")
    same = [c for c in a[0] if c not in ("frames_per_s", "epoch_time_s")]
    assert list(a[0]) == list(b[0])
    assert [[r[c] for c in same] for r in a] == [[r[c] for c in same] for r in b]
    sa, sb = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_refused_on_changed_config(setup, tmp_path):
    data, lang = setup
    exp = tmp_path / "exp"
    Trainer(config(**{"schedule.max_epochs": 1}), data, data, exp, lang_dir=lang).run()
    with pytest.raises(AsrktError, match=r"config\.yaml: the saved config differs .*optim\.lr: 0\.01 -> 0\.02"):
        Trainer(config(**{"schedule.max_epochs": 1, "optim.lr": 0.02}), data, data, exp, lang_dir=lang).run()
    # keys that do not change the result are allowed to differ; a finished run stays finished
    result = Trainer(config(**{"schedule.max_epochs": 1, "num_threads": 2}), data, data, exp, lang_dir=lang).run()
    assert result["epochs"] == 1 and len(read_summary(exp)) == 1


def test_nan_batch_skipped_and_counted(tiny_data_dir, tmp_path):
    clean = add_features(shutil.copytree(tiny_data_dir, tmp_path / "clean"))
    noisy = add_features(tiny_data_dir, nan_utt="spk0-u1")
    lang = make_lang(clean, tmp_path / "lang")
    cfg = config(**{"schedule.max_epochs": 1, "batch.max_utts": 1, "max_bad_batch_fraction": 0.5})
    Trainer(cfg, noisy, clean, tmp_path / "exp", lang_dir=lang).run()
    rows = read_summary(tmp_path / "exp")
    assert rows[0]["bad_batches"] == "1" and rows[0]["train_loss"] != "nan"
    cfg = config(**{"schedule.max_epochs": 1, "batch.max_utts": 1, "max_bad_batch_fraction": 0.1})
    with pytest.raises(AsrktError, match=r"1 of 6 batches in epoch 1 had a non-finite loss .*spk0-u1"):
        Trainer(cfg, noisy, clean, tmp_path / "exp2", lang_dir=lang).run()


@pytest.mark.parametrize("kind", ["log_probs", "topk_posterior"])
def test_kt_only_training_reduces_the_kl(setup, tmp_path, kind):
    data, lang = setup
    post = tmp_path / "post"
    num_classes = len((lang / "tokens.txt").read_text().splitlines())
    write_posteriors(data, post, num_classes=num_classes, kind=kind, topk=4)
    cfg = config(**{"loss.kd_alpha": 1.0, "loss.temperature": 2.0, "schedule.max_epochs": 6,
                    "schedule.min_epochs": 6, "optim.lr": 0.05, "batch.max_frames": 120})
    trainer = Trainer(cfg, data, data, tmp_path / "exp", lang_dir=None, train_post=post, valid_post=post)
    trainer.setup()
    initial = trainer.validate().value("kd")
    trainer.run()
    rows = read_summary(tmp_path / "exp")
    soft = [float(r["valid_kd"]) for r in rows]
    assert list(rows[0]) == summary_columns(["kd"], None)  # no lang dir: no hard targets, no metric
    # random per-frame targets can only be memorised: the dev (= train) KL falls every epoch, by > 10% in 6
    assert all(b < a for a, b in zip([initial] + soft, soft)) and soft[-1] < 0.9 * initial
    assert float(rows[-1]["train_kd"]) < float(rows[0]["train_kd"])


def test_init_from_copies_weights_and_checks_architecture(setup, tmp_path):
    data, lang = setup
    Trainer(config(**{"schedule.max_epochs": 1}), data, data, tmp_path / "a", lang_dir=lang).run()
    init = final_state(tmp_path / "a")
    t = Trainer(config(**{"optim.lr": 0.001}), data, data, tmp_path / "b", lang_dir=lang,
                init_from=tmp_path / "a" / "final.pt")
    t.setup()
    assert all(torch.equal(v, init[k]) for k, v in t.model.state_dict().items())
    t = Trainer(config(**{"model.lstm.cells": 8}), data, data, tmp_path / "c", lang_dir=lang,
                init_from=tmp_path / "a" / "final.pt")
    with pytest.raises(AsrktError, match=r"a/final\.pt: cannot initialise .*shapes differ: .*"):
        t.setup()


def test_missing_inputs_are_clear_errors(setup, tmp_path):
    data, lang = setup
    with pytest.raises(AsrktError, match="give --train-post and --valid-post"):
        Trainer(config(**{"loss.kd_alpha": 0.3}), data, data, tmp_path / "e", lang_dir=lang).run()
    with pytest.raises(AsrktError, match=r"give --targets-dir \(--lang-dir\)"):
        Trainer(config(), data, data, tmp_path / "e", lang_dir=None).run()
    post = tmp_path / "post"
    write_posteriors(data, post, num_classes=5)
    with pytest.raises(AsrktError, match=r"post_info\.yaml: the teacher has 5 output classes but the model has"):
        Trainer(config(**{"loss.kd_alpha": 0.5}), data, data, tmp_path / "e", lang_dir=lang, train_post=post,
                valid_post=post).run()


def test_cli_writes_replay_and_log(setup, tmp_path, monkeypatch):
    from asrkt.bin import train

    data, lang = setup
    conf = tmp_path / "teacher.yaml"
    conf.write_text("model:\n  type: dnn\n  dnn: {hidden_layers: 1, hidden_units: 16, context: 1}\n"
                    "schedule: {max_epochs: 1}\nnum_threads: 1\n")
    monkeypatch.chdir(tmp_path)
    argv = ["--config", str(conf), "--train-dir", str(data), "--valid-dir", str(data), "--lang-dir", str(lang),
            "--exp-dir", "exp/teacher", "--seed", "3", "--optim.lr", "0.005"]
    train.main(argv)
    exp = tmp_path / "exp" / "teacher"
    replay = (exp / "replay.sh").read_text()
    assert f"cd {tmp_path}" in replay and "python -m asrkt.bin.train --config" in replay and "--seed 3" in replay
    assert os.access(exp / "replay.sh", os.X_OK)
    log = (exp / "log" / "train.log").read_text()
    assert "seed: 3" in log and "epoch 1:" in log and "lr: 0.005" in log
    assert (exp / "final.pt").exists()
    with pytest.raises(SystemExit) as e:  # a changed config: one ERROR line, exit 1
        train.main(argv[:-1] + ["0.01"])
    assert e.value.code == 1
    assert "ERROR" in (exp / "log" / "train.log").read_text().splitlines()[-1]  # the reason is in the log too
    assert "--optim.lr 0.005" in (exp / "replay.sh").read_text()  # the refused run did not overwrite it


def test_keep_checkpoints_bounds_the_model_files_too(setup, tmp_path):
    data, lang = setup
    exp = tmp_path / "exp"
    result = Trainer(config(**TINY_DNN, **{"schedule.max_epochs": 4, "schedule.min_epochs": 4, "keep_checkpoints": 1}),
                     data, data, exp, lang_dir=lang).run()
    models = sorted(p.name for p in (exp / "checkpoints").glob("epoch_*.model.pt"))
    assert len(list((exp / "checkpoints").glob("epoch_?.pt"))) == 1
    assert f"epoch_{result['best_epoch']}.model.pt" in models and len(models) <= 2
