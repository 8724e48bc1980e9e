"""Acoustic models: shapes, subsampling, targets_delay, padding invariance, checkpoints."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from asrkt.models import (DnnConfig, LstmConfig, ModelConfig, build_model, describe, load_model, save_checkpoint,
                          splice_frames, stack_frames)
from asrkt.utils.config import resolve
from asrkt.utils.errors import AsrktError

D, C = 6, 7


def small(type_, subsampling=1, **kw):
    """A tiny model config; ``kw`` goes to the dnn or lstm sub-config."""
    dnn = DnnConfig(context=2, hidden_layers=2, hidden_units=16, dropout=0.0)
    lstm = LstmConfig(num_layers=2, cells=12, targets_delay=0, dropout=0.0)
    if type_ == "dnn":
        dnn = dataclasses.replace(dnn, **kw)
    else:
        lstm = dataclasses.replace(lstm, **kw)
    return ModelConfig(type=type_, subsampling=subsampling, dnn=dnn, lstm=lstm)


CONFIGS = {
    "dnn": small("dnn"),
    "dnn-batchnorm-sigmoid": small("dnn", norm="batch", activation="sigmoid"),
    "dnn-sub3": small("dnn", subsampling=3),
    "lstm-delay": small("lstm", targets_delay=3),
    "lstmp-sub2-delay": small("lstm", subsampling=2, projection=5, targets_delay=2),
    "blstm": small("lstm", bidirectional=True, targets_delay=4),
    "lstm-frameskip3-delay": small("lstm", frame_skip=3, targets_delay=2),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", CONFIGS)
def test_shapes_lengths_and_layers(name):
    cfg = CONFIGS[name]
    model = build_model(cfg, D, C).eval()
    s = cfg.subsampling
    lengths = torch.tensor([13, 7, 1])
    feats = torch.randn(3, 13, D)
    logits, out_lengths = model(feats, lengths)
    expected = [-(-n // s) for n in lengths.tolist()]
    assert logits.shape == (3, -(-13 // s), C)
    assert out_lengths.tolist() == expected == model.output_lengths(lengths).tolist()
    hidden, _ = model.forward_hidden(feats, lengths)
    assert hidden.shape[-1] == model.hidden_dim
    assert torch.allclose(model.output_layer(hidden), logits)
    layers = model.hidden_layers_outputs(feats, lengths)
    assert len(layers) == (cfg.dnn.hidden_layers if cfg.type == "dnn" else cfg.lstm.num_layers)
    assert torch.allclose(layers[-1], hidden)
    assert model.num_params() > 0


def test_targets_delay_only_for_unidirectional_lstm():
    assert build_model(CONFIGS["lstm-delay"], D, C).targets_delay == 3
    assert build_model(CONFIGS["blstm"], D, C).targets_delay == 0
    assert build_model(CONFIGS["dnn"], D, C).targets_delay == 0


def test_stack_frames_completes_with_the_utterances_own_last_frame():
    feats = torch.arange(1, 8, dtype=torch.float).view(1, 7, 1).repeat(2, 1, 1)
    feats[1, 5:] = -100.0  # padding of the second utterance (length 5)
    out, lengths = stack_frames(feats, torch.tensor([7, 5]), 3)
    assert lengths.tolist() == [3, 2]
    assert out[0].tolist() == [[1, 2, 3], [4, 5, 6], [7, 7, 7]]
    assert out[1, :2].tolist() == [[1, 2, 3], [4, 5, 5]]


def test_splice_replicates_edges_within_the_utterance():
    feats = torch.tensor([[1.0, 2.0, 3.0, -9.0]]).view(1, 4, 1)
    out = splice_frames(feats, torch.tensor([3]), 2)
    assert out[0, :3].tolist() == [[1, 1, 1, 2, 3], [1, 1, 2, 3, 3], [1, 2, 3, 3, 3]]


def input_gradient(model, T, t_out):
    """|d logits[0, t_out] / d feats[0, t]| summed over dims, for every input frame t."""
    feats = torch.randn(1, T, D, requires_grad=True)
    logits, _ = model(feats, torch.tensor([T]))
    logits[0, t_out].sum().backward()
    return feats.grad[0].abs().sum(-1)


@pytest.mark.parametrize("delay", [0, 3])
def test_targets_delay_output_sees_exactly_delay_frames_ahead(delay):
    model = build_model(small("lstm", targets_delay=delay), D, C).eval()
    T = 12
    for t in (0, 4):
        grad = input_gradient(model, T, t)
        assert grad[t + delay] > 0, "output t must depend on input t + delay"
        assert torch.all(grad[t + delay + 1:] == 0), "output t must not see beyond input t + delay"
    # Near the end the delay is filled with the last frame, so the last output still sees the last input.
    assert input_gradient(model, T, T - 1)[T - 1] > 0


def test_targets_delay_counts_subsampled_frames():
    s, d = 2, 2
    model = build_model(small("lstm", subsampling=s, targets_delay=d), D, C).eval()
    grad = input_gradient(model, 20, 3)  # output 3 covers inputs 6-7; +d stacked frames -> up to input 11
    assert grad[(3 + d) * s + s - 1] > 0
    assert torch.all(grad[(3 + d + 1) * s:] == 0)


def test_frame_skip_keeps_the_input_rate_and_steps_every_k_frames():
    k, d = 3, 2  # the delay rounds up to one step of 3 frames
    model = build_model(small("lstm", frame_skip=k, targets_delay=d), D, C).eval()
    assert model.targets_delay == 3 and model.subsampling == 1 and "frame_skip 3" in describe(model)
    grad = input_gradient(model, 20, 4)  # output 4 is in step 1 (inputs 3-5); one step later: up to input 8
    assert grad[8] > 0 and torch.all(grad[9:] == 0)
    assert torch.all(input_gradient(model, 20, 3)[9:] == 0)  # outputs 3, 4, 5 come from the same step
    with pytest.raises(AsrktError, match="'lstm.frame_skip' must be 1 when subsampling is 2"):
        build_model(small("lstm", subsampling=2, frame_skip=3), D, C)


@pytest.mark.parametrize("name", CONFIGS)
def test_padding_never_leaks_into_valid_frames(name):
    model = build_model(CONFIGS[name], D, C).eval()
    s = model.subsampling
    short = torch.randn(1, 7, D)
    alone, alone_len = model(short, torch.tensor([7]))
    batch = torch.randn(3, 16, D) * 50  # loud garbage everywhere, then the real utterance in front
    batch[1, :7] = short[0]
    padded, out_len = model(batch, torch.tensor([16, 7, 11]))
    n = alone_len.item()
    assert out_len[1].item() == n == -(-7 // s)
    torch.testing.assert_close(padded[1, :n], alone[0, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("projection", [0, 5])
def test_blstm_layer_computes_what_a_packed_bidirectional_lstm_does(projection):
    """BiLstmLayer (two forward-only LSTMs on the padded batch) against nn.LSTM(bidirectional=True) on the packed
    batch, with the same weights: outputs and input gradients at every valid step."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from asrkt.models.lstm import BiLstmLayer

    layer = BiLstmLayer(D, 12, projection)
    ref = torch.nn.LSTM(D, 12, batch_first=True, bidirectional=True, proj_size=projection)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            own = layer.backward_lstm if name.endswith("_reverse") else layer.forward_lstm
            p.copy_(getattr(own, name.removesuffix("_reverse")))
    lengths = torch.tensor([9, 4, 1, 7])
    x = torch.randn(4, 9, D)
    mask = (torch.arange(9).view(1, -1) < lengths.view(-1, 1)).unsqueeze(-1)
    x_ref = x.clone().requires_grad_(True)
    x_own = x.clone().requires_grad_(True)
    expected, _ = pad_packed_sequence(ref(pack_padded_sequence(x_ref, lengths, batch_first=True,
                                                               enforce_sorted=False))[0], batch_first=True)
    got = layer(x_own, lengths) * mask
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    torch.testing.assert_close(x_own.grad * mask, x_ref.grad, atol=1e-5, rtol=1e-5)


def test_padding_values_do_not_change_batchnorm_training_outputs():
    # In training mode batch statistics are taken over valid frames only.
    model = build_model(small("dnn", norm="batch"), D, C).train()
    lengths = torch.tensor([9, 5])
    feats = torch.randn(2, 9, D)
    out1, _ = model(feats, lengths)
    feats2 = feats.clone()
    feats2[1, 5:] = 1e3
    out2, _ = model(feats2, lengths)
    torch.testing.assert_close(out1[1, :5], out2[1, :5])
    torch.testing.assert_close(out1[0], out2[0])


@pytest.mark.parametrize("name", ["dnn-batchnorm-sigmoid", "lstmp-sub2-delay", "blstm"])
def test_checkpoint_round_trip(tmp_path, name):
    model = build_model(CONFIGS[name], D, C)
    model.train()
    model(torch.randn(2, 8, D), torch.tensor([8, 6]))  # moves batch-norm running stats off their defaults
    model.eval()
    path = tmp_path / "exp" / "final.pt"
    save_checkpoint(path, model, extra={"epoch": 3, "lang": "data/lang"})
    assert not list(path.parent.glob(".*tmp*")), "no temporary file left behind"
    loaded, meta = load_model(path)
    assert meta == {"epoch": 3, "lang": "data/lang"}
    assert loaded.config == model.config and loaded.targets_delay == model.targets_delay
    assert not loaded.training
    feats, lengths = torch.randn(2, 10, D), torch.tensor([10, 4])
    torch.testing.assert_close(loaded(feats, lengths)[0], model(feats, lengths)[0], rtol=0, atol=0)
    assert describe(loaded) == describe(model)


def test_describe_names_type_layers_and_params():
    text = describe(build_model(CONFIGS["blstm"], D, C))
    assert text.startswith("blstm: 2 x 12 cells") and "M params" in text
    assert describe(build_model(CONFIGS["dnn"], D, C)).startswith("dnn: 2 x 16 relu, context +-2")


def test_load_model_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(AsrktError, match=f"{missing}: model checkpoint not found"):
        load_model(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(AsrktError, match=f"{garbage}: not a readable model checkpoint"):
        load_model(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(AsrktError, match=f"{other}: not an asrkt model checkpoint"):
        load_model(other)


def test_load_model_rejects_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model(CONFIGS["dnn"], D, C))
    state = torch.load(path, weights_only=True)
    state["model_config"]["dnn"]["hidden_units"] = 8
    torch.save(state, path)
    with pytest.raises(AsrktError, match=f"{path}: weights do not match"):
        load_model(path)


@pytest.mark.parametrize("overrides, message", [
    ({"type": "cnn"}, "'type' must be one of dnn, lstm"),
    ({"lstm.projection": 12}, "'lstm.projection' must be 0 \\(none\\) or smaller than lstm.cells"),
    ({"type": "dnn", "dnn.norm": "group"}, "'dnn.norm' must be batch or layer or none"),
    ({"subsampling": 0}, "'subsampling' must be >= 1"),
])
def test_bad_model_config_is_an_error(overrides, message):
    cfg = resolve(small("lstm"), overrides=overrides)
    with pytest.raises(AsrktError, match=message):
        build_model(cfg, D, C)


def test_config_resolves_nested_keys():
    cfg = resolve(ModelConfig, overrides={"type": "dnn", "dnn.hidden_units": 64, "lstm.bidirectional": True})
    assert cfg.dnn.hidden_units == 64 and cfg.lstm.bidirectional and cfg.subsampling == 1


def test_bad_inputs_are_errors():
    model = build_model(CONFIGS["dnn"], D, C)
    with pytest.raises(AsrktError, match="feature dimension 5 does not match the model's input dimension 6"):
        model(torch.randn(1, 4, 5), torch.tensor([4]))
    with pytest.raises(AsrktError, match=r"lengths must lie in \[1, 4\]"):
        model(torch.randn(2, 4, D), torch.tensor([4, 0]))
