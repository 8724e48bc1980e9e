"""docs/extending.md, executed: a toy objective, loss term, epoch hook, initialiser and model type, each added
through its extension point from outside the library (nothing under asrkt/ is edited), then trained together."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from asrkt.train.terms import STUDENT_HIDDEN, HardTargetTerm, LossTerm, register_term
from asrkt.models import AcousticModel, build_model, load_model, register_model, stack_frames
from asrkt.targets import Objective, TargetSource, register_objective
from asrkt.train.hooks import EpochHook, register_hook
from asrkt.train.init import register_initializer
from asrkt.train.trainer import Trainer, TrainConfig
from asrkt.utils.config import from_dict, resolve
from test_train_data import add_features
from test_train_trainer import read_summary


# --------------------------------------------------------------------------------------------- objective
class ToyFrameTargets(TargetSource):
    """Frame t of every utterance is class (t mod C): a frame-level target any model can learn."""

    def __init__(self, utts, frames, num_classes):
        super().__init__()
        self.targets = {u: torch.arange(n) % num_classes for u, n in zip(utts, frames)}

    @staticmethod
    def collate(items):
        return torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=-100)


@register_objective
class ToyFrameObjective(Objective):
    name = "toy_frames"
    hard_term = "toy_ce"
    metric = "fer"
    metric_label = "frame error rate (%)"

    @property
    def num_classes(self) -> int:
        return int((self._need_targets_dir() / "num_classes").read_text())

    def target_source(self, data_dir, utts, subsampling=1):
        from asrkt.data.kaldi_dir import read_table

        frames = read_table(data_dir / "utt2num_frames")
        return ToyFrameTargets(utts, [-(-int(frames[u]) // subsampling) for u in utts], self.num_classes)

    def loss(self, logits, out_lengths, targets, utt_ids=None):
        targets = targets.to(logits.device)[:, :logits.shape[1]]
        self.last_stats.frames = int((targets != -100).sum())
        return F.cross_entropy(logits[:, :targets.shape[1]].transpose(1, 2), targets, reduction="sum")

    def errors(self, logits, out_lengths, targets):
        targets = targets.to(logits.device)[:, :logits.shape[1]]
        valid = targets != -100
        return int((logits[:, :targets.shape[1]].argmax(-1) != targets)[valid].sum()), int(valid.sum())


# ----------------------------------------------------------------------------------------------- terms
@register_term
class ToyCeTerm(HardTargetTerm):
    name = "toy_ce"
    objective_name = "toy_frames"


@dataclasses.dataclass
class HiddenL2Options:
    layer: int = -1  # which hidden layer


@register_term
class HiddenL2Term(LossTerm):
    """Squared norm of one hidden layer's output per frame: a term on student hidden states (as PKT is)."""

    name = "hidden_l2"
    inputs = (STUDENT_HIDDEN,)
    Options = HiddenL2Options

    def __call__(self, out, batch):
        h = out.hidden[self.options.layer]
        mask = out.mask(h.shape[1])
        return h[mask].pow(2).sum(-1).sum(), int(mask.sum())


# ------------------------------------------------------------------------------------------ model type
@dataclasses.dataclass
class ToyOptions:
    hidden: int = 16
    layers: int = 1


@register_model("toy_mlp")
class ToyMlp(AcousticModel):
    """Stacked frames through ``layers`` tanh layers."""

    def __init__(self, config, input_dim, num_classes):
        super().__init__(config, input_dim, num_classes)
        o = from_dict(ToyOptions, config.options, "model.options")
        dims = [input_dim * self.subsampling] + [o.hidden] * o.layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.hidden_dim = o.hidden
        self.output_layer = nn.Linear(o.hidden, num_classes)

    def _hidden_layers(self, feats, lengths, all_layers):
        h, out_lengths = stack_frames(feats, lengths, self.subsampling)
        outs = []
        for layer in self.layers:
            h = torch.tanh(layer(h))
            outs.append(h)
        return outs, out_lengths


# ------------------------------------------------------------------------------------ hook, initialiser
@dataclasses.dataclass
class GrowOptions:
    at_epoch: int = 2


@register_hook
class GrowToyMlp(EpochHook):
    """Before ``at_epoch``: insert an identity-initialised layer on top (the deeper net computes the same)."""

    name = "toy_grow"
    Options = GrowOptions

    def on_epoch_start(self, trainer, epoch):
        if epoch != self.options.at_epoch:
            return
        old = trainer.model
        cfg = dataclasses.replace(old.config, options={**old.config.options,
                                                       "layers": old.config.options.get("layers", 1) + 1})
        new = build_model(cfg, old.input_dim, old.num_classes)
        state = new.state_dict()
        state.update({k: v for k, v in old.state_dict().items() if k in state and "layers" not in k})
        n = len(old.layers)
        state.update({f"layers.{i}.{p}": v for i in range(n) for p, v in old.layers[i].state_dict().items()})
        # identity on top of tanh(h): atanh is not exact, so use a layer whose tanh(W h) ~ h for small h
        state[f"layers.{n}.weight"] = torch.eye(old.hidden_dim)
        state[f"layers.{n}.bias"] = torch.zeros(old.hidden_dim)
        new.load_state_dict(state)
        trainer.replace_model(new, f"{self.name}: {n} -> {n + 1} layers")


@register_initializer("toy_zero_output")
def zero_output(model, source_model, cfg, source_path):
    """Copy everything but the output layer, which starts at zero."""
    state = model.state_dict()
    for k, v in source_model.state_dict().items():
        if k in state and state[k].shape == v.shape:
            state[k] = v
    state["output_layer.weight"] = torch.zeros_like(state["output_layer.weight"])
    model.load_state_dict(state)
    return sorted(state)


# ------------------------------------------------------------------------------------------------- test
def toy_config(**over) -> TrainConfig:
    base = {"model.type": "toy_mlp", "model.options": {"hidden": 12}, "objective": "toy_frames",
            "loss.terms": [{"name": "toy_ce"}, {"name": "hidden_l2", "weight": 0.01}],
            "hooks": [{"name": "toy_grow", "at_epoch": 2}], "optim.lr": 0.01, "batch.max_frames": 400,
            "num_threads": 1, "log_interval_s": 0.0, "schedule.max_epochs": 3, "schedule.min_epochs": 3,
            "seed": 3}
    base.update(over)
    return resolve(TrainConfig, overrides=base)


@pytest.fixture
def toy_setup(tiny_data_dir, tmp_path):
    data = add_features(tiny_data_dir)
    targets = tmp_path / "toy_targets"
    targets.mkdir()
    (targets / "num_classes").write_text("4\n")
    return data, targets


class DiesInEpoch3(Trainer):
    def train_epoch(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return super().train_epoch(epoch)


def test_toy_extensions_train_together_and_resume(toy_setup, tmp_path):
    data, targets = toy_setup
    exp = tmp_path / "exp"
    result = Trainer(toy_config(), data, data, exp, targets_dir=targets).run()
    rows = read_summary(exp)
    assert list(rows[0])[:7] == ["epoch", "lr", "train_loss", "train_toy_ce", "train_hidden_l2", "valid_loss",
                                 "valid_toy_ce"]
    assert "valid_fer" in rows[0] and result["epochs"] == 3
    model, meta = load_model(exp / "final.pt")
    last = torch.load(exp / "checkpoints" / "epoch_3.pt", weights_only=False)
    assert last["model_config"]["options"]["layers"] == 2  # the hook grew the net before epoch 2
    assert len(model.layers) == (2 if result["best_epoch"] >= 2 else 1)
    assert meta["objective"] == "toy_frames" and meta["loss_terms"] == {"toy_ce": 1.0, "hidden_l2": 0.01}
    info = (exp / "train_info.yaml").read_text()
    assert "toy_grow" in info and "hidden_l2: 0.01" in info

    # killed in epoch 3 (after the hook grew the model): the rerun rebuilds the grown architecture
    with pytest.raises(KeyboardInterrupt):
        DiesInEpoch3(toy_config(), data, data, tmp_path / "resumed", targets_dir=targets).run()
    Trainer(toy_config(), data, data, tmp_path / "resumed", targets_dir=targets).run()
    a, b = read_summary(exp), read_summary(tmp_path / "resumed")
    same = [c for c in a[0] if c not in ("frames_per_s", "epoch_time_s")]
    assert [[r[c] for c in same] for r in a] == [[r[c] for c in same] for r in b]


def test_toy_initialiser_and_mappings(toy_setup, tmp_path):
    data, targets = toy_setup
    src = tmp_path / "src"
    Trainer(toy_config(**{"schedule.max_epochs": 1, "schedule.min_epochs": 1, "hooks": []}), data, data, src,
            targets_dir=targets).run()
    t = Trainer(toy_config(**{"init.method": "toy_zero_output", "hooks": []}), data, data, tmp_path / "b",
                targets_dir=targets, init_from=src / "final.pt")
    t.setup()
    assert t.model.output_layer.weight.abs().sum() == 0
    # ESPnet-style mapping: only layers.0 is copied, the output layer keeps its random init
    t = Trainer(toy_config(**{"init.param": ["layers.0.:layers.0.:"], "hooks": []}), data, data, tmp_path / "c",
                targets_dir=targets, init_from=src / "final.pt")
    t.setup()
    source, _ = load_model(src / "final.pt")
    assert torch.equal(t.model.layers[0].weight, source.layers[0].weight)
    assert not torch.equal(t.model.output_layer.weight, source.output_layer.weight)


def test_unknown_names_are_clear_errors(toy_setup, tmp_path):
    from asrkt.utils.errors import AsrktError

    data, targets = toy_setup
    for over, msg in [({"loss.terms": [{"name": "nope"}]}, "unknown loss term 'nope'"),
                      ({"hooks": [{"name": "nope"}]}, "unknown epoch hook 'nope'"),
                      ({"objective": "nope"}, "unknown training objective 'nope'"),
                      ({"init.method": "nope"}, "unknown init.method 'nope'"),
                      ({"loss.terms": [{"name": "ctc"}]}, "trains on ctc targets, but the objective is toy_frames"),
                      ({"loss.terms": [{"name": "toy_ce", "bogus": 1}]}, "unknown config key 'bogus'")]:
        with pytest.raises(AsrktError, match=msg):
            t = Trainer(toy_config(**over), data, data, tmp_path / "x", targets_dir=targets,
                        init_from=None if "init.method" not in over else tmp_path / "none.pt")
            t.setup()
    assert not os.path.exists(tmp_path / "x" / "final.pt")


def test_init_mapping_errors_name_the_checkpoint_and_the_names(toy_setup, tmp_path):
    from asrkt.utils.errors import AsrktError

    data, targets = toy_setup
    src = tmp_path / "src"
    Trainer(toy_config(**{"schedule.max_epochs": 1, "schedule.min_epochs": 1, "hooks": []}), data, data, src,
            targets_dir=targets).run()
    for over, msg in [({"init.param": ["nope.:layers.0.:"]}, r"init.param 'nope.:layers.0.:': no parameter of the "
                                                             r"checkpoint starts with 'nope.'"),
                      ({"init.param": ["a:b:c:d"]}, r"expected src:dst:exclude1,exclude2"),
                      ({"model.options": {"hidden": 20}}, r"src/final\.pt: cannot initialise .*shapes differ"),
                      ({"init.param": ["layers.0.:layers.7.:"]}, r"cannot initialise .*not in the model: layers\.7\.")]:
        t = Trainer(toy_config(**{"hooks": [], **over}), data, data, tmp_path / "x", targets_dir=targets,
                    init_from=src / "final.pt")
        with pytest.raises(AsrktError, match=msg):
            t.setup()


def test_loss_term_spec_errors(toy_setup, tmp_path):
    from asrkt.utils.errors import AsrktError

    data, targets = toy_setup
    for over, msg in [({"loss.kd_alpha": 0.5}, "give either loss.terms or loss.kd_alpha, not both"),
                      ({"loss.terms": [{"name": "toy_ce"}, {"name": "toy_ce"}]}, "no name twice"),
                      ({"loss.terms": [{"name": "toy_ce", "weight": 0}]}, "weight must be > 0"),
                      ({"loss.terms": [{"weight": 1}]}, "each loss term is a mapping with a 'name'"),
                      ({"hooks": [{"at_epoch": 2}]}, "each epoch hook is a mapping with a 'name'")]:
        with pytest.raises(AsrktError, match=msg):
            Trainer(toy_config(**over), data, data, tmp_path / "x", targets_dir=targets).setup()
    with pytest.raises(AsrktError, match="'hooks' must be a mapping, got 'toy_grow'"):  # caught by the config
        toy_config(hooks=["toy_grow"])
