"""DILS (asrkt.transfer.dils, hook 'dils' in asrkt.train.methods): the deeper net computes the same function right
after insertion (within 1e-5, eval mode), a Trainer run grows the model, and a killed-and-resumed run rebuilds
the grown model."""
from __future__ import annotations

import pytest
import torch
import yaml

import asrkt.train.methods  # noqa: F401 (registers dils)
from asrkt.models import ModelConfig, build_model, load_model
from asrkt.models.config import DnnConfig
from asrkt.train.trainer import Trainer
from asrkt.transfer.dils import insert_layer, sample_last_hidden
from asrkt.utils.errors import AsrktError
from test_train_trainer import TINY_DNN, config, read_summary, setup  # noqa: F401 (fixture)


def dnn(activation="relu", norm="layer", layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(type="dnn", dnn=DnnConfig(context=1, hidden_layers=layers, hidden_units=24,
                                                activation=activation, norm=norm, dropout=0.2))
    return build_model(cfg, input_dim=10, num_classes=7).eval()


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 20, 10, generator=g), torch.tensor([20, 13, 7])


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_relu_insertion_is_exact(norm):
    model = dnn(norm=norm)
    if norm == "batch":  # non-trivial running statistics
        model.blocks[0][1].running_mean.uniform_(-1, 1)
        model.blocks[1][1].running_var.uniform_(0.5, 2)
    feats, lengths = inputs()
    before, _ = model(feats, lengths)
    deeper, error = insert_layer(model)
    deeper.eval()
    after, _ = deeper(feats, lengths)
    assert error == 0.0 and len(deeper.blocks) == 3
    assert deeper.config.dnn.hidden_layers == 3 and deeper.config.dnn.plain_top_layers == 1
    assert isinstance(deeper.blocks[2][1], torch.nn.Identity)  # the new block has no norm
    mask = torch.arange(20)[None] < lengths[:, None]
    assert (before - after)[mask].abs().max().item() < 1e-5
    # twice: still exact, and the checkpoint config rebuilds it
    deeper2, _ = insert_layer(deeper)
    after2, _ = deeper2.eval()(feats, lengths)
    assert (before - after2)[mask].abs().max().item() < 1e-5
    rebuilt = build_model(deeper2.config, 10, 7)
    rebuilt.load_state_dict(deeper2.state_dict())


@pytest.mark.parametrize("activation,tolerance", [("tanh", 0.1), ("sigmoid", 0.02)])
def test_least_squares_insertion_is_close(activation, tolerance):
    """Not exact (act^-1 is not linear): measured max logit difference on held-out frames, relative to the
    largest logit, tanh 0.073, sigmoid 0.007 (500 fitted frames, 24 units)."""
    model = dnn(activation=activation)
    g = torch.Generator().manual_seed(3)
    utts = [torch.randn(50, 10, generator=g) for _ in range(12)]
    sample = sample_last_hidden(model, utts[:10], 1000)
    deeper, error = insert_layer(model, sample)
    held_out, lengths = torch.stack(utts[10:]), torch.tensor([50, 50])
    before, _ = model(held_out, lengths)
    after, _ = deeper.eval()(held_out, lengths)
    scale = before.abs().max().item()
    assert sample.shape == (500, 24) and error < tolerance * scale
    assert (before - after).abs().max().item() < tolerance * scale
    with pytest.raises(AsrktError, match="least squares"):
        insert_layer(model)


def test_lstm_is_refused():
    model = build_model(ModelConfig(type="lstm"), 10, 7)
    with pytest.raises(AsrktError, match="can only deepen a DNN"):
        insert_layer(model)


DILS_HOOK = [{"name": "dils", "every": 1, "max_layers": 3, "until_no_gain": False}]


def test_trainer_grows_the_model_and_resume_rebuilds_it(setup, tmp_path, caplog):
    data, lang = setup
    cfg = config(**TINY_DNN, **{"hooks": DILS_HOOK, "schedule.max_epochs": 4, "schedule.min_epochs": 4})
    exp = tmp_path / "exp"
    with caplog.at_level("INFO"):
        Trainer(cfg, data, data, exp, lang_dir=lang).run()
    # a layer before epochs 2 and 3, then max_layers stops it
    assert "dils: 1 -> 2 hidden layers, identity (exact)" in caplog.text
    assert "dils: 2 -> 3 hidden layers" in caplog.text and "target depth 3 reached" in caplog.text
    for epoch in (3, 4):
        state = torch.load(exp / "checkpoints" / f"epoch_{epoch}.pt", weights_only=False)
        assert state["model_config"]["dnn"]["hidden_layers"] == 3
    model, _ = load_model(exp / "final.pt")
    assert model.config.dnn.plain_top_layers == model.config.dnn.hidden_layers - 1
    assert "dils" in (exp / "train_info.yaml").read_text()
    # The table of depths and the best model of each (for the WER per depth): 1 epoch at depths 1 and 2, 2 at 3.
    depths = read_depths(exp)
    assert [(r["hidden_layers"], r["epochs"], r["first_epoch"]) for r in depths] == [("1", "1", "1"), ("2", "1", "2"),
                                                                                    ("3", "2", "3")]
    times = [float(r["train_time_s"]) for r in depths]
    assert float(depths[-1]["cumulative_time_s"]) == pytest.approx(sum(times), abs=0.02) and sum(times) > 0
    for r in depths:
        if r["best_epoch"]:  # its best accepted epoch's model, loadable like final.pt
            model, extra = load_model(exp / "dils" / f"depth_{r['hidden_layers']}.pt")
            assert model.config.dnn.hidden_layers == int(r["hidden_layers"])
            assert extra["epoch"] == int(r["best_epoch"])
            assert f"{extra['valid_loss']:.4f}" == r["best_valid_loss"]

    class DiesInEpoch3(Trainer):
        def train_epoch(self, epoch):
            if epoch == 3:
                raise KeyboardInterrupt
            return super().train_epoch(epoch)

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        DiesInEpoch3(cfg, data, data, resumed, lang_dir=lang).run()
    last = torch.load(resumed / "checkpoints" / "epoch_2.pt", weights_only=False)
    assert last["model_config"]["dnn"]["hidden_layers"] == 2
    Trainer(cfg, data, data, resumed, lang_dir=lang).run()
    a, b = read_summary(exp), read_summary(resumed)
    same = [c for c in a[0] if c not in ("frames_per_s", "epoch_time_s")]
    assert [[r[c] for c in same] for r in a] == [[r[c] for c in same] for r in b]
    untimed = [c for c in depths[0] if not c.endswith("time_s")]  # the resumed run rebuilt the table of depths
    assert [[r[c] for c in untimed] for r in read_depths(resumed)] == [[r[c] for c in untimed] for r in depths]


def read_depths(exp):
    lines = (exp / "dils" / "depths.tsv").read_text().splitlines()
    return [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:]]


def test_dils_insertion_keeps_the_dev_loss_and_refuses_lstm(setup, tmp_path):
    data, lang = setup
    # the dev loss right after insertion equals the one before (eval mode, exact for ReLU)
    t = Trainer(config(**TINY_DNN, **{"hooks": DILS_HOOK}), data, data, tmp_path / "a", lang_dir=lang)
    t.setup()
    before = t.validate().total()
    t.hooks[0].on_epoch_start(t, 2)
    assert t.model.config.dnn.hidden_layers == 2
    assert t.validate().total() == pytest.approx(before, rel=1e-5)
    with pytest.raises(AsrktError, match="can only deepen a DNN"):
        Trainer(config(**{"hooks": DILS_HOOK}), data, data, tmp_path / "b", lang_dir=lang).run()
    with pytest.raises(AsrktError, match="give every"):
        Trainer(config(**TINY_DNN, **{"hooks": [{"name": "dils"}]}), data, data, tmp_path / "c",
                lang_dir=lang).run()


def test_depths_table_and_the_wer_per_depth_report(tmp_path, capsys):
    from asrkt.bin import dils_depths
    from asrkt.transfer.dils import depths_table

    history = [  # depth 1: 2 epochs (the 2nd rejected); depth 2: 1; depth 3: 1, rejected (no model)
        {"epoch": 1, "hidden_layers": 1, "valid_loss": 2.0, "valid_ter": 50.0, "epoch_time_s": 1.5, "decision": "accepted"},
        {"epoch": 2, "hidden_layers": 1, "valid_loss": 2.1, "valid_ter": 51.0, "epoch_time_s": 1.5, "decision": "rejected"},
        {"epoch": 3, "hidden_layers": 2, "valid_loss": 1.5, "valid_ter": 40.0, "epoch_time_s": 2.0, "decision": "accepted"},
        {"epoch": 4, "hidden_layers": 3, "valid_loss": 1.6, "valid_ter": 41.0, "epoch_time_s": 2.5, "decision": "rejected"},
    ]
    exp = tmp_path / "exp"
    (exp / "dils").mkdir(parents=True)
    (exp / "dils" / "depths.tsv").write_text(depths_table(history, "ter"))
    for depth, wer in ((1, 30.123), (2, 20.5)):
        (exp / "dils" / f"decode_dev_depth_{depth}").mkdir()
        (exp / "dils" / f"decode_dev_depth_{depth}" / "score.yaml").write_text(f"wer: {wer}\n")
    rows = dils_depths.main([str(exp), "--decode-dirs", f"{exp}/dils/decode_dev_depth_{{depth}}"])
    got = [(r["hidden_layers"], r["epochs"], r["best_epoch"], r["best_valid_loss"], r["train_time_s"],
            r["cumulative_time_s"], r["best_valid_ter"], r["dev_wer"]) for r in rows]
    assert got == [("1", "2", "1", "2.0000", "3.00", "3.00", "50.00", "30.12"),
                   ("2", "1", "3", "1.5000", "2.00", "5.00", "40.00", "20.50"),
                   ("3", "1", "", "", "2.50", "7.50", "", "")]
    md = (exp / "dils" / "depths.md").read_text()
    assert "| 2 | 1 | 3 | 3 | 3 | 1.5000 | 2.00 | 5.00 | 40.00 | 20.50 |" in md and md in capsys.readouterr().out

    (exp / "dils" / "depths.tsv").write_text("hidden_layers\tepochs\n1\t2\t3\n")  # a damaged table
    for decode_dirs, message in ((f"{exp}/dils/decode_dev_depth_{{depth}}", f"ERROR: {exp}/dils/depths.tsv, line 2: "
                                  "3 cells for 2 columns"),
                                 (f"{exp}/dils/decode_dev", "ERROR: --decode-dirs must hold {depth}")):
        with pytest.raises(SystemExit):  # one ERROR line naming the file and the line, exit status 1
            dils_depths.main([str(exp), "--decode-dirs", decode_dirs])
        assert message in capsys.readouterr().err


def test_at_convergence_trains_each_depth_to_convergence_then_deepens(setup, tmp_path, caplog):
    """dils at_convergence: each depth runs until newbob converges, then a layer goes in and the schedule starts
    over (initial lr, not halving); max_layers ends it. Killed right after a convergence (the insertion pending),
    the resumed run is the same run."""
    data, lang = setup
    hook = [{"name": "dils", "at_convergence": True, "max_layers": 3, "until_no_gain": False}]
    # Quick convergence: halving from the first epoch whose gain is below 20 %, stop below 5 %.
    cfg = config(**TINY_DNN, **{"hooks": hook, "schedule.max_epochs": 40, "schedule.start_halving_impr": 0.2,
                                "schedule.end_halving_impr": 0.05})
    exp = tmp_path / "exp"
    with caplog.at_level("INFO"):
        Trainer(cfg, data, data, exp, lang_dir=lang).run()
    assert "dils: 1 hidden layers converged" in caplog.text and "dils: 2 hidden layers converged" in caplog.text
    assert "the schedule starts over at lr 0.01" in caplog.text
    depths = read_depths(exp)
    assert [r["hidden_layers"] for r in depths] == ["1", "2", "3"]
    assert all(int(r["epochs"]) >= 2 for r in depths)  # each depth trained until it converged, not one epoch
    rows = read_summary(exp)
    firsts = [int(r["first_epoch"]) for r in depths[1:]]
    for first in firsts:  # the first epoch of a new depth runs at the initial lr again
        assert float(rows[first - 1]["lr"]) == 0.01 and float(rows[first - 2]["lr"]) < 0.01
    info = yaml.safe_load((exp / "train_info.yaml").read_text())
    assert info["stop_reason"].startswith("converged")  # the last depth converged too; the cap was not reached
    # The final model is the last accepted one, newbob's rule: the depth with the lowest dev loss.
    best = min((r for r in depths if r["best_valid_loss"]), key=lambda r: float(r["best_valid_loss"]))
    model, extra = load_model(exp / "final.pt")
    assert model.config.dnn.hidden_layers == int(best["hidden_layers"])
    assert f"{extra['valid_loss']:.4f}" == best["best_valid_loss"]

    class DiesAfterConvergence(Trainer):
        def train_epoch(self, epoch):
            if epoch == firsts[0]:  # the checkpoint before it holds the restarted schedule and the pending layer
                raise KeyboardInterrupt
            return super().train_epoch(epoch)

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        DiesAfterConvergence(cfg, data, data, resumed, lang_dir=lang).run()
    Trainer(cfg, data, data, resumed, lang_dir=lang).run()
    b = read_summary(resumed)
    same = [c for c in rows[0] if c not in ("frames_per_s", "epoch_time_s")]
    assert [[r[c] for c in same] for r in rows] == [[r[c] for c in same] for r in b]


def test_dils_needs_exactly_one_way_to_grow():
    from asrkt.train.methods import DilsHook, DilsOptions

    for options in (DilsOptions(), DilsOptions(every=2, at_convergence=True)):
        with pytest.raises(AsrktError, match="give every \\(epochs\\), at_epochs, or at_convergence: true"):
            DilsHook(options)
