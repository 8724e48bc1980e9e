"""TLI (asrkt.transfer.tli, initialiser 'tli' in asrkt.train.methods): identical architectures inject exactly and
score 1; DNN -> deeper DNN, DNN -> LSTM and LSTM -> larger LSTM run and score in (0, 1); through the Trainer."""
from __future__ import annotations

import pytest
import torch

import asrkt.train.methods as methods
from asrkt.models import ModelConfig, build_model, load_model
from asrkt.models.config import DnnConfig, LstmConfig
from asrkt.train.trainer import Trainer
from asrkt.transfer.tli import inject, inject_tensor, match
from test_train_trainer import TINY_DNN, config, read_summary, setup  # noqa: F401 (fixture)


def dnn(layers=2, units=24, seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(type="dnn", dnn=DnnConfig(context=1, hidden_layers=layers, hidden_units=units)),
                       10, 7)


def lstm(layers=1, cells=16, seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(type="lstm", lstm=LstmConfig(num_layers=layers, cells=cells)), 10, 7)


@pytest.mark.parametrize("make", [dnn, lstm])
def test_identical_architectures_inject_exactly_and_score_1(make):
    source, target = make(seed=1), make(seed=2)
    assert not torch.equal(source.output_layer.weight, target.output_layer.weight)
    result = inject(target, source)
    assert result.score == 1.0 and not result.unmatched_target and not result.unmatched_source
    assert all(m.how == "copy" and m.target == m.source for m in result.matches)
    s, t = source.state_dict(), target.state_dict()
    assert all(torch.equal(s[k], t[k]) for k in s)


@pytest.mark.parametrize("pair", ["dnn->deeper dnn", "dnn->lstm", "lstm->larger lstm"])
def test_other_architectures_score_between_0_and_1(pair):
    source, target = {"dnn->deeper dnn": (dnn(2, 24), dnn(3, 32, seed=5)),
                      "dnn->lstm": (dnn(2, 24), lstm(2, 16, seed=5)),
                      "lstm->larger lstm": (lstm(1, 16), lstm(2, 24, seed=5))}[pair]
    before = {k: v.clone() for k, v in target.state_dict().items()}
    result = inject(target, source)
    assert 0.0 < result.score < 1.0 and result.matches
    changed = [k for k, v in target.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and set(changed) <= {m.target for m in result.matches}  # (layer-norm gains: ones into ones)
    # the output layers (last tensors, same kind) find each other
    assert {("output_layer.weight", "output_layer.weight"), ("output_layer.bias", "output_layer.bias")} <= \
        {(m.target, m.source) for m in result.matches}
    feats, lengths = torch.randn(2, 9, 10), torch.tensor([9, 5])
    logits, _ = target.eval()(feats, lengths)
    assert torch.isfinite(logits).all()


def test_injection_is_a_centre_crop_pad_and_resize_mix():
    src = torch.arange(16.0).reshape(4, 4)
    assert torch.equal(inject_tensor(src, torch.zeros(4, 4)), src)
    # 4 -> 2 rows: resized half-way (to 3) then centre-cropped; columns equal
    out = inject_tensor(src, torch.zeros(2, 4))
    assert out.shape == (2, 4) and torch.allclose(out[:, 0], torch.tensor([0.0, 6.0]))
    # 2 -> 6: resized to 4, centred in the target, whose own values stay around it
    out = inject_tensor(torch.tensor([1.0, 2.0]), torch.full((6,), -9.0))
    assert out[0] == -9.0 and out[-1] == -9.0 and torch.allclose(out[1:5], torch.tensor([1.0, 4 / 3, 5 / 3, 2.0]))
    # LSTM gates are injected gate by gate: a larger LSTM's input-gate rows come from the source's input gate
    source, target = lstm(1, 16), lstm(1, 24, seed=5)
    pairs, _, _ = match(source, target)
    assert {("layers.0.weight_ih_l0", "layers.0.weight_ih_l0"), ("layers.0.bias_ih_l0", "layers.0.bias_ih_l0"),
            ("layers.0.weight_hh_l0", "layers.0.weight_hh_l0")} <= {(t, s) for t, s, _ in pairs}
    inject(target, source)
    s, t = source.layers[0].bias_ih_l0.detach(), target.layers[0].bias_ih_l0.detach()
    for gate in range(4):  # each gate of the target holds (a resized) its own source gate in its centre
        src_gate, tgt_gate = s[16 * gate:16 * (gate + 1)], t[24 * gate:24 * (gate + 1)]
        assert torch.allclose(tgt_gate[2:22][0], src_gate[0]) and torch.allclose(tgt_gate[2:22][-1], src_gate[-1])


def test_tli_through_the_trainer(setup, tmp_path, caplog):
    data, lang = setup
    teacher = tmp_path / "teacher"
    Trainer(config(**TINY_DNN, **{"schedule.max_epochs": 1}), data, data, teacher, lang_dir=lang).run()
    cfg = config(**{"init.method": "tli", "init.from_model": str(teacher / "final.pt"), "schedule.max_epochs": 1})
    with caplog.at_level("INFO"):
        Trainer(cfg, data, data, tmp_path / "student", lang_dir=lang).run()
    result = methods.LAST_TLI_RESULT
    assert result is not None and 0.0 < result.score < 1.0
    assert f"TLI score {result.score:.4f}" in caplog.text
    source, _ = load_model(teacher / "final.pt")
    assert len(read_summary(tmp_path / "student")) == 1
    # the student's output bias came from the teacher's (same shape: copied unchanged) before training
    assert any(m.target == "output_layer.bias" and m.how == "copy" for m in result.matches)
    assert source.output_layer.bias.shape == (len((lang / "tokens.txt").read_text().splitlines()),)
