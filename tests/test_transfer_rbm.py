"""Layer-wise pre-training: RBM/DBN (asrkt.transfer.rbm, initialiser 'dbn') and discriminative layer-wise growth
(asrkt.transfer.layerwise, hook 'layerwise'), both registered in asrkt.train.methods.

The RBM is checked on its own (reconstruction error falls on structured data, free energy and CD statistics against
a hand computation), as a DBN loaded into a DNN (the DNN's hidden layers compute what the RBM stack does, seeded
determinism), and in Trainer runs; bad combinations give errors naming the config key."""
from __future__ import annotations

import math

import pytest
import torch
import yaml

import asrkt.train.methods as methods
from asrkt.data.dataset import UtteranceDataset
from asrkt.models import ModelConfig, build_model, load_model
from asrkt.models.config import DnnConfig
from asrkt.train.trainer import Trainer
from asrkt.transfer.layerwise import depth_config, grown
from asrkt.transfer.rbm import BERNOULLI, GAUSSIAN, DbnOptions, Rbm, load_into_dnn, train_dbn
from asrkt.utils.config import resolve
from asrkt.utils.errors import AsrktError
from test_train_trainer import TINY_DNN, config, read_summary, setup  # noqa: F401 (fixture)

SIGMOID_DNN = {**TINY_DNN, "model.dnn.activation": "sigmoid", "model.dnn.norm": "none", "model.dnn.hidden_layers": 2,
               "model.dnn.hidden_units": 16}
# small and quick: a few hundred frames, 20-frame minibatches
QUICK_DBN = {"gauss_epochs": 3, "bern_epochs": 2, "batch_size": 20, "buffer_frames": 200, "gauss_lr": 0.02}


def structured(n: int, visible: str, seed: int = 0) -> torch.Tensor:
    """Frames made of 3 hidden binary causes: v = sum_k z_k P_k (+ noise for Gaussian; Bernoulli: thresholded)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(3, 24, generator=g)
    z = (torch.rand(n, 3, generator=g) < 0.5).float()
    v = z @ protos
    if visible == GAUSSIAN:
        v = v + 0.1 * torch.randn(n, 24, generator=g)
        return (v - v.mean(0)) / v.std(0)
    return (v > 0.5).float()


@pytest.mark.parametrize("visible,lr", [(GAUSSIAN, 0.01), (BERNOULLI, 0.4)])
def test_reconstruction_error_falls_over_cd_epochs(visible, lr):
    data = structured(2000, visible)
    g = torch.Generator().manual_seed(1)
    rbm = Rbm(24, 12, visible, param_stddev=0.1, generator=g)
    curve = []
    for epoch in range(6):
        error = 0.0
        perm = torch.randperm(data.shape[0], generator=g)
        for i in range(0, data.shape[0], 50):
            error += rbm.update(data[perm[i:i + 50]], lr, momentum=0.5 if epoch < 2 else 0.9, l2=2e-4, generator=g)
        curve.append(error / data.numel())
    # measured (per unit): gaussian 0.91 -> 0.18, bernoulli 0.13 -> 0.012; with the gradient sign flipped it rises
    # (gaussian 1.22 -> 2.92 with 8 guarded minibatches, bernoulli 0.66 -> 0.70)
    assert curve[-1] < 0.5 * curve[0], curve
    assert all(b < a * 1.05 for a, b in zip(curve, curve[1:])), curve
    assert rbm.guarded == 0


def test_gaussian_bernoulli_free_energy_and_gradient_sign_by_hand():
    """v = (1, -1), W = [[0.5, 0.25]], b = (0.1, -0.2), c = 0.3: W v + c = 0.55.
    F(v) = 0.5 |v - b|^2 - softplus(0.55) = 0.5 (0.81 + 0.64) - log(1 + e^0.55) = 0.725 - 1.0054925 = -0.2804925;
    -dF/dW = sigmoid(0.55) v = 0.6341356 (1, -1), -dF/db = v - b = (0.9, -0.8), -dF/dc = 0.6341356."""
    rbm = Rbm(2, 1, GAUSSIAN)
    rbm.weight = torch.tensor([[0.5, 0.25]])
    rbm.vis_bias = torch.tensor([0.1, -0.2])
    rbm.hid_bias = torch.tensor([0.3])
    v = torch.tensor([[1.0, -1.0]])
    assert rbm.free_energy(v).item() == pytest.approx(-0.2804925, abs=1e-6)
    p = rbm.hidden_probs(v)
    assert p.item() == pytest.approx(0.6341356, abs=1e-6)
    # the CD statistics with no negative phase are the positive phase, which is -dF/dtheta (log p(v) goes up)
    zero_vis, zero_hid = torch.zeros(1, 2), torch.zeros(1, 1)
    dw, db, dc = Rbm.gradient(v, p, zero_vis, zero_hid)
    assert dw[0].tolist() == pytest.approx([0.6341356, -0.6341356], abs=1e-6)
    assert db.tolist() == pytest.approx([1.0, -1.0], abs=1e-6)  # <v>_data; the model term removes b (below)
    assert dc.tolist() == pytest.approx([0.6341356], abs=1e-6)
    params = [t.clone().requires_grad_(True) for t in (rbm.weight, rbm.vis_bias, rbm.hid_bias)]
    rbm.weight, rbm.vis_bias, rbm.hid_bias = params
    grads = torch.autograd.grad(rbm.free_energy(v).sum(), params)
    assert (-grads[0][0]).tolist() == pytest.approx([0.6341356, -0.6341356], abs=1e-6)
    assert (-grads[1]).tolist() == pytest.approx([0.9, -0.8], abs=1e-6)
    assert (-grads[2]).tolist() == pytest.approx([0.6341356], abs=1e-6)
    # with a negative phase at the visible bias (the Gaussian's mean for h = 0) the bias statistic is v - b
    _, db_full, _ = Rbm.gradient(v, p, rbm.vis_bias.detach().unsqueeze(0), zero_hid)
    assert db_full.tolist() == pytest.approx([0.9, -0.8], abs=1e-6)
    # a step along the statistics lowers the free energy of the data point (raises its probability)
    with torch.no_grad():
        stepped = Rbm(2, 1, GAUSSIAN)
        stepped.weight, stepped.vis_bias, stepped.hid_bias = (t.detach() + 0.1 * d for t, d in
                                                              zip(params, (dw, db_full, dc)))
        assert stepped.free_energy(v).item() < -0.2804925


def sigmoid_dnn(layers=2, units=16, activation="sigmoid", norm="none", **dnn):
    torch.manual_seed(0)
    return ModelConfig(type="dnn", dnn=DnnConfig(context=1, hidden_layers=layers, hidden_units=units,
                                                 activation=activation, norm=norm, dropout=0.0, **dnn))


def test_dbn_weights_load_into_the_dnn_and_are_seeded(setup):
    data, _ = setup
    dataset = UtteranceDataset(data)
    cfg = sigmoid_dnn()
    model = build_model(cfg, dataset.feat_dim, 7).eval()
    feats, lengths = dataset.feats(0).unsqueeze(0), torch.tensor([dataset.num_frames[0]])
    before = model(feats, lengths)[0]
    options = DbnOptions(**QUICK_DBN)
    result = train_dbn(model, dataset, options, seed=5, max_frames=400)
    assert len(result.rbms) == 2 and [r.visible for r in result.rbms] == [GAUSSIAN, BERNOULLI]
    assert [len(c) for c in result.curves] == [3, 2] and result.curves[0][-1] < result.curves[0][0]
    assert result.frames == sum(dataset.num_frames)
    names = load_into_dnn(model, result)
    assert names == ["blocks.0.0.weight", "blocks.0.0.bias", "blocks.1.0.weight", "blocks.1.0.bias"]
    assert model.blocks[0][0].weight.shape == (16, 3 * dataset.feat_dim) and model.blocks[1][0].weight.shape == (16, 16)
    after = model(feats, lengths)[0]
    assert not torch.allclose(before, after)
    # the DNN's hidden layers compute the RBM stack on the normalised input (normalisation folded into layer 1)
    x, _, _ = model.input_frames(feats, lengths)
    h = (x - result.shift) * result.scale
    hidden = model.hidden_layers_outputs(feats, lengths)
    for i, r in enumerate(result.rbms):
        h = r.hidden_probs(h)
        assert torch.allclose(hidden[i][0], h, atol=1e-5)
    # seeded: the same seed gives the same weights, another seed others
    again = train_dbn(model, dataset, options, seed=5, max_frames=400)
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(result.rbms, again.rbms))
    other = train_dbn(model, dataset, options, seed=6, max_frames=400)
    assert not torch.equal(result.rbms[0].weight, other.rbms[0].weight)


def test_trainer_with_dbn_init(setup, tmp_path, caplog):
    data, lang = setup
    over = {**SIGMOID_DNN, "init.method": "dbn", "init.options": {**QUICK_DBN, "seed": 3}, "schedule.max_epochs": 2}
    exp = tmp_path / "exp"
    with caplog.at_level("INFO"):
        Trainer(config(**over), data, data, exp, lang_dir=lang).run()
    assert "dbn layer 1/2 (gaussian-bernoulli" in caplog.text and "dbn layer 2/2 (bernoulli-bernoulli" in caplog.text
    assert "initialised 4 of 6 parameter tensors by dbn" in caplog.text
    curves = methods.LAST_DBN_RESULT.curves
    assert len(curves) == 2 and all(math.isfinite(e) for c in curves for e in c)
    assert len(read_summary(exp)) == 2 and load_model(exp / "final.pt")[0].config.dnn.activation == "sigmoid"
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["init"]["method"] == "dbn" and saved["init"]["options"]["seed"] == 3
    # the same config and seed initialise the same model; a resumed (here: finished) run does not pre-train again
    t = Trainer(config(**over), data, data, tmp_path / "again", lang_dir=lang)
    t.setup()
    t2 = Trainer(config(**over), data, data, tmp_path / "again2", lang_dir=lang)
    t2.setup()
    assert all(torch.equal(a, b) for a, b in zip(t.model.state_dict().values(), t2.model.state_dict().values()))
    caplog.clear()
    with caplog.at_level("INFO"):
        Trainer(config(**over), data, data, exp, lang_dir=lang).run()
    assert "dbn layer" not in caplog.text


def test_trainer_with_layerwise_growth(setup, tmp_path, caplog):
    data, lang = setup
    over = {**TINY_DNN, "model.dnn.hidden_layers": 3, "hooks": [{"name": "layerwise", "epochs_per_layer": 1}],
            "schedule.max_epochs": 2}
    exp = tmp_path / "exp"
    with caplog.at_level("INFO"):
        Trainer(config(**over), data, data, exp, lang_dir=lang).run()
    for depth in (1, 2):
        assert f"layerwise: {depth} of 3 hidden layers" in caplog.text
        assert f"layerwise: {depth} hidden layers after 1 pass(es)" in caplog.text
    assert "layerwise: 3 hidden layers (final depth)" in caplog.text
    model, _ = load_model(exp / "final.pt")
    assert model.config.dnn.hidden_layers == 3 and len(model.blocks) == 3
    state = torch.load(exp / "checkpoints" / "epoch_2.pt", weights_only=False)
    stages = state["hooks"][0]["stages"]
    assert [s["depth"] for s in stages] == [1, 2] and all(math.isfinite(s["valid_loss"]) for s in stages)
    assert [r["epoch"] for r in read_summary(exp)] == ["1", "2"]  # the pre-training passes are not schedule epochs

    class DiesInEpoch2(Trainer):
        def train_epoch(self, epoch):
            if epoch == 2:
                raise KeyboardInterrupt
            return super().train_epoch(epoch)

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        DiesInEpoch2(config(**over), data, data, resumed, lang_dir=lang).run()
    caplog.clear()
    with caplog.at_level("INFO"):
        Trainer(config(**over), data, data, resumed, lang_dir=lang).run()
    assert "layerwise:" not in caplog.text  # resumed after the pre-training: not repeated
    a, b = read_summary(exp), read_summary(resumed)
    same = [c for c in a[0] if c not in ("frames_per_s", "epoch_time_s")]
    assert [[r[c] for c in same] for r in a] == [[r[c] for c in same] for r in b]


def test_layerwise_growth_keeps_trained_blocks_and_norm_layout():
    cfg = sigmoid_dnn(layers=3, activation="relu", norm="layer", plain_top_layers=1)
    target = build_model(cfg, 10, 7)
    one = grown(target, None, 1)
    assert one.config.dnn.hidden_layers == 1 and one.config.dnn.plain_top_layers == 0
    with torch.no_grad():
        one.blocks[0][0].weight.add_(1.0)
        one.output_layer.weight.add_(1.0)
    two = grown(target, one, 2)
    assert torch.equal(two.blocks[0][0].weight, one.blocks[0][0].weight)
    assert torch.equal(two.blocks[1][0].weight, target.blocks[1][0].weight)
    assert torch.equal(two.output_layer.weight, target.output_layer.weight)  # a new output layer
    assert torch.equal(grown(target, one, 2, keep_output=True).output_layer.weight, one.output_layer.weight)
    three = grown(target, two, 3)
    assert three.config == target.config  # the final net has the target's layout (blocks 0, 1 normed, 2 plain)
    assert [type(b[1]).__name__ for b in three.blocks] == ["LayerNorm", "LayerNorm", "Identity"]
    assert depth_config(cfg, 2).dnn.plain_top_layers == 0


@pytest.mark.parametrize("over,message", [
    ({**TINY_DNN, "init.method": "dbn"}, r"init.method dbn needs model.dnn.activation sigmoid, got relu"),
    ({**SIGMOID_DNN, "model.dnn.norm": "layer", "init.method": "dbn"}, r"init.method dbn needs model.dnn.norm none"),
    ({"init.method": "dbn"}, r"init.method dbn pre-trains the hidden layers of a DNN .*not model.type lstm"),
    ({**SIGMOID_DNN, "init.method": "dbn", "init.options": {"gauss_epochs": 0}},
     r"init.options \(dbn\): gauss_epochs and bern_epochs must be >= 1"),
    ({**SIGMOID_DNN, "init.method": "dbn", "init.options": {"epochs": 2}}, r"unknown config key 'epochs'"),
    ({**SIGMOID_DNN, "init.method": "dbn", "init.options": {"layers": 3}},
     r"layers 3 exceeds model.dnn.hidden_layers 2"),
    ({**SIGMOID_DNN, "init.method": "dbn", "init.param": ["a:b"]}, r"init.param mappings are not used"),
    ({**SIGMOID_DNN, "init.options": {"seed": 1}}, r"init.options: init.method copy takes no options"),
    ({"hooks": [{"name": "layerwise"}]}, r"hooks 'layerwise' grows a DNN .*not model.type lstm"),
    ({**TINY_DNN, "hooks": [{"name": "layerwise"}]},
     r"start_layers must lie in .* = \[1, 0\] \(model.dnn.hidden_layers is the final depth\)"),
    ({**SIGMOID_DNN, "hooks": [{"name": "layerwise", "epochs_per_layer": 0}]}, r"epochs_per_layer must be >= 1"),
])
def test_bad_combinations_are_clear_errors(setup, tmp_path, over, message):
    data, lang = setup
    with pytest.raises(AsrktError, match=message):
        Trainer(config(**over), data, data, tmp_path / "x", lang_dir=lang).run()


def test_dbn_refuses_a_checkpoint(setup, tmp_path):
    data, lang = setup
    src = tmp_path / "src"
    Trainer(config(**{**SIGMOID_DNN, "schedule.max_epochs": 1}), data, data, src, lang_dir=lang).run()
    with pytest.raises(AsrktError, match=r"init.method dbn pre-trains on the training data: it takes no --init-from"):
        Trainer(config(**{**SIGMOID_DNN, "init.method": "dbn"}), data, data, tmp_path / "x", lang_dir=lang,
                init_from=src / "final.pt").setup()


def test_recipe_configs_resolve(repo_root):
    from asrkt.train.config import TrainConfig

    conf = repo_root / "egs" / "digits" / "conf"
    dbn = resolve(TrainConfig, conf / "teacher_dbn.yaml")
    assert dbn.init.method == "dbn" and dbn.model.dnn.activation == "sigmoid" and dbn.model.dnn.norm == "none"
    assert DbnOptions(**dbn.init.options).gauss_lr == 0.01
    lw = resolve(TrainConfig, conf / "teacher_layerwise.yaml")
    assert [h["name"] for h in lw.hooks] == ["layerwise"] and lw.model.dnn.hidden_layers == 3
