"""RBM/DBN pre-training of a feed-forward DNN (Hinton et al. 2006), as Kaldi nnet1's ``steps/nnet/pretrain_dbn.sh``
with ``rbm-train-cd1-frmshuff``: a stack of RBMs trained greedily by contrastive divergence (CD-1), each on the
hidden activations of the one below; their weights then initialise the DNN's hidden ``Linear`` layers.

* Layer 1 is Gaussian-Bernoulli: real-valued visible units of unit variance on the DNN's own input (stacked and
  spliced frames of the CMVN'd features, :meth:`asrkt.models.dnn.DnnModel.input_frames`). As Kaldi's
  ``feature_transform`` (splice, then a global shift and scale), the input is first normalised to zero mean and
  unit variance per dimension with statistics over every training frame (``normalize_input``). The DNN has no
  such layer, so the normalisation is folded into the first ``Linear`` when the weights are loaded
  (``W' = W diag(1/s)``, ``b' = b - W (m/s)``): the DNN computes exactly what the DBN does.
* Layers 2.. are Bernoulli-Bernoulli, trained on the mean-field outputs ``p(h|v)`` of the layer below; their
  visible biases start at ``log(p / (1 - p))`` of the input's mean (Kaldi's ``VisibleBiasCmvnFilename``).
* CD-1 as ``rbm-train-cd1-frmshuff``: positive statistics from ``p(h|v)``; one binary sample of ``h``; the
  reconstruction is the visible means (not sampled); negative statistics from ``p(h|v')``. Updates with momentum
  (0.5 rising linearly to 0.9 in 40 steps of 500k frames), step ``lr (1 - momentum)``, L2 on the weights, minibatches
  of 100 frames cut from a shuffled buffer of 32768 frames. The Gaussian layer's guard against weight explosion:
  when the reconstruction's standard deviation exceeds twice the data's, the parameters are scaled down by the
  ratio, the lr multiplied by 0.9 (until the next momentum step) and the momentum reset, and that minibatch is not
  used for an update. Defaults are pretrain_dbn.sh's: lr 0.01 (Gaussian) and 0.4 (Bernoulli), 2 epochs for the
  Gaussian layer and 1 for the others, L2 2e-4, initial weights ~ N(0, 0.1^2).
* The reconstruction error (mean squared error per visible unit, over the minibatches as they are trained, as
  Kaldi's MseProgress) is logged per epoch and kept in :class:`DbnResult`.

Which DNNs: the DBN's hidden units are sigmoid probabilities, so only ``dnn.activation: sigmoid`` with no norm
layer in the pre-trained blocks (``dnn.norm: none``) is accepted; ReLU/tanh units or a layer/batch norm between
the layers would not compute what the upper RBMs were trained on, and are refused with an error naming the key.
An LSTM has no RBM counterpart and is refused. The initialiser ``dbn`` (``init.method: dbn``) is registered in
:mod:`asrkt.train.methods`; this module holds the computation.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time

import torch
from torch import nn

from asrkt.data.dataset import FrameBatchSampler, make_loader
from asrkt.models import DnnModel
from asrkt.utils.errors import AsrktError
from asrkt.utils.seed import derive_seed

logger = logging.getLogger(__name__)

GAUSSIAN, BERNOULLI = "gaussian", "bernoulli"
STD_GUARD = 2.0  # Kaldi: reconstruction std > 2 x data std on a Gaussian layer = imminent weight explosion
MIN_STD = 1e-4  # input dimensions with a smaller std are not scaled (constant inputs)


@dataclasses.dataclass
class DbnOptions:
    """``init.options`` of ``init.method: dbn`` (defaults: Kaldi pretrain_dbn.sh / rbm-train-cd1-frmshuff)."""

    layers: int = 0  # hidden layers pre-trained, from the input side; 0: all of model.dnn.hidden_layers
    gauss_epochs: int = 2  # epochs of the Gaussian-Bernoulli first layer (pretrain_dbn.sh: 2 x rbm_iter)
    bern_epochs: int = 1  # epochs of each Bernoulli-Bernoulli layer (rbm_iter)
    gauss_lr: float = 0.01  # rbm_lrate_low
    bern_lr: float = 0.4  # rbm_lrate
    l2: float = 0.0002  # rbm_l2penalty
    momentum: float = 0.5  # initial momentum ...
    momentum_max: float = 0.9  # ... raised linearly to this ...
    momentum_steps: int = 40  # ... in this many steps ...
    momentum_step_frames: int = 500000  # ... one every this many frames (per layer)
    batch_size: int = 100  # frames per CD-1 update (bunchsize)
    buffer_frames: int = 32768  # frames shuffled together before being cut into minibatches (cachesize)
    param_stddev: float = 0.1  # initial weights ~ N(0, param_stddev^2)
    normalize_input: bool = True  # global mean/variance normalisation of the input, folded into layer 1
    seed: int = 0  # with the run's seed: the initial weights, the sampling and the frame order

    def check(self) -> None:
        problems = []
        if self.layers < 0:
            problems.append(f"layers must be >= 0 (0: all), got {self.layers}")
        if self.gauss_epochs < 1 or self.bern_epochs < 1:
            problems.append(f"gauss_epochs and bern_epochs must be >= 1, got {self.gauss_epochs}, {self.bern_epochs}")
        if not (self.gauss_lr > 0 and self.bern_lr > 0):
            problems.append(f"gauss_lr and bern_lr must be > 0, got {self.gauss_lr}, {self.bern_lr}")
        if self.l2 < 0 or not self.param_stddev > 0:
            problems.append(f"l2 must be >= 0 and param_stddev > 0, got {self.l2}, {self.param_stddev}")
        if not (0 <= self.momentum <= self.momentum_max < 1):
            problems.append(f"need 0 <= momentum <= momentum_max < 1, got {self.momentum}, {self.momentum_max}")
        if self.momentum_steps < 1 or self.momentum_step_frames < 1:
            problems.append("momentum_steps and momentum_step_frames must be >= 1")
        if self.batch_size < 1 or self.buffer_frames < self.batch_size:
            problems.append(f"need batch_size >= 1 and buffer_frames >= batch_size, got {self.batch_size}, "
                            f"{self.buffer_frames}")
        if problems:
            raise AsrktError("init.options (dbn): " + "; ".join(problems))


class Rbm:
    """A restricted Boltzmann machine with Bernoulli hidden units and Gaussian (unit variance) or Bernoulli
    visible units: energy ``E(v, h) = 0.5 |v - b|^2 - c.h - h.W v`` (Gaussian) or ``-b.v - c.h - h.W v``.
    ``weight`` is (hidden, visible), as ``nn.Linear.weight``."""

    def __init__(self, num_visible: int, num_hidden: int, visible: str = BERNOULLI, param_stddev: float = 0.1,
                 vis_bias: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        if visible not in (GAUSSIAN, BERNOULLI):
            raise ValueError(f"visible must be {GAUSSIAN} or {BERNOULLI}, got {visible!r}")
        self.visible = visible
        self.weight = torch.randn(num_hidden, num_visible, generator=generator, device=device) * param_stddev
        self.hid_bias = torch.zeros(num_hidden, device=device)
        self.vis_bias = (vis_bias.to(device=device, dtype=torch.float32).clone() if vis_bias is not None
                         else torch.zeros(num_visible, device=device))
        self._inc = [torch.zeros_like(p) for p in self.params()]
        self.lr_scale = 1.0  # lowered by the Gaussian guard until the next momentum step
        self.guarded = 0  # minibatches the guard skipped

    def params(self) -> list[torch.Tensor]:
        return [self.weight, self.vis_bias, self.hid_bias]

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | v) = sigmoid(W v + c)."""
        return torch.sigmoid(v @ self.weight.t() + self.hid_bias)

    def visible_means(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: W^T h + b (Gaussian) or sigmoid(W^T h + b) (Bernoulli)."""
        x = h @ self.weight + self.vis_bias
        return x if self.visible == GAUSSIAN else torch.sigmoid(x)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -log sum_h exp(-E(v, h)) per frame: 0.5 |v - b|^2 (Gaussian) or -b.v (Bernoulli),
        minus sum_j softplus(W_j v + c_j)."""
        hidden = nn.functional.softplus(v @ self.weight.t() + self.hid_bias).sum(-1)
        if self.visible == GAUSSIAN:
            return 0.5 * (v - self.vis_bias).pow(2).sum(-1) - hidden
        return -(v @ self.vis_bias) - hidden

    @staticmethod
    def gradient(pos_vis, pos_hid, neg_vis, neg_hid) -> list[torch.Tensor]:
        """The CD estimate of d log p(v) / d(W, b, c), averaged over frames: positive minus negative statistics
        (``<h v^T>``, ``<v>``, ``<h>``). The positive part alone is ``-dF(v)/d(W, b, c)``."""
        n = pos_vis.shape[0]
        return [(pos_hid.t() @ pos_vis - neg_hid.t() @ neg_vis) / n, (pos_vis - neg_vis).sum(0) / n,
                (pos_hid - neg_hid).sum(0) / n]

    def cd1(self, v: torch.Tensor, generator: torch.Generator | None = None):
        """One Gibbs step from the data: (p(h|v), reconstructed visible means v', p(h|v'))."""
        pos_hid = self.hidden_probs(v)
        sample = torch.bernoulli(pos_hid, generator=generator)
        neg_vis = self.visible_means(sample)
        return pos_hid, neg_vis, self.hidden_probs(neg_vis)

    def update(self, v: torch.Tensor, lr: float, momentum: float, l2: float,
               generator: torch.Generator | None = None) -> float:
        """One CD-1 update on the minibatch ``v`` (frames, visible); returns its summed squared reconstruction
        error. ``lr`` is the step of a momentum-free update (Kaldi scales it by (1 - momentum))."""
        pos_hid, neg_vis, neg_hid = self.cd1(v, generator)
        error = float((neg_vis - v).pow(2).sum())
        if self.visible == GAUSSIAN:
            data_std, recon_std = float(v.std(unbiased=False)), float(neg_vis.std(unbiased=False))
            if not (math.isfinite(recon_std) and math.isfinite(error)):
                raise AsrktError("dbn: the Gaussian-Bernoulli RBM diverged (non-finite reconstruction): lower "
                                 "init.options gauss_lr or check the features")
            if recon_std > STD_GUARD * data_std:
                scale = data_std / recon_std
                for p in self.params():
                    p.mul_(scale)
                for inc in self._inc:
                    inc.zero_()
                self.lr_scale *= 0.9
                self.guarded += 1
                return error
        step = lr * self.lr_scale * (1.0 - momentum)
        grads = self.gradient(v, pos_hid, neg_vis, neg_hid)
        grads[0] = grads[0] - l2 * self.weight
        for p, inc, g in zip(self.params(), self._inc, grads):
            inc.mul_(momentum).add_(g, alpha=step)
            p.add_(inc)
        return error


@dataclasses.dataclass
class DbnResult:
    """A trained stack: the RBMs, the input normalisation (shift, scale) and each layer's reconstruction error per
    epoch (mean squared error per visible unit)."""

    rbms: list[Rbm]
    shift: torch.Tensor
    scale: torch.Tensor
    curves: list[list[float]]
    frames: int = 0  # training frames per epoch
    seconds: float = 0.0

    def summary(self) -> str:
        parts = []
        for i, (rbm, curve) in enumerate(zip(self.rbms, self.curves)):
            kind = "gauss-bern" if rbm.visible == GAUSSIAN else "bern-bern"
            guarded = f", {rbm.guarded} guarded minibatches" if rbm.guarded else ""
            parts.append(f"layer {i + 1} ({kind}): reconstruction error {' -> '.join(f'{e:.4g}' for e in curve)}"
                         f"{guarded}")
        return "; ".join(parts)


def check_dbn_model(model, layers: int = 0) -> int:
    """The number of layers to pre-train; AsrktError naming the config key when ``model`` cannot take a DBN."""
    if not isinstance(model, DnnModel):
        raise AsrktError(f"init.method dbn pre-trains the hidden layers of a DNN (model.type dnn), not "
                         f"model.type {model.config.type}: an (B)LSTM has no RBM counterpart. Pre-train the DNN "
                         "teacher (or a DNN student) with dbn and transfer to the LSTM by KT")
    d = model.config.dnn
    if d.activation != "sigmoid":
        raise AsrktError(f"init.method dbn needs model.dnn.activation sigmoid, got {d.activation}: the DBN's hidden "
                         "units are Bernoulli (sigmoid probabilities), and upper RBMs are trained on them")
    n = layers or d.hidden_layers
    if n > d.hidden_layers:
        raise AsrktError(f"init.options (dbn): layers {layers} exceeds model.dnn.hidden_layers {d.hidden_layers}")
    if any(not isinstance(model.blocks[i][1], nn.Identity) for i in range(n)):
        raise AsrktError(f"init.method dbn needs model.dnn.norm none, got {d.norm}: a norm layer between the "
                         "layers would change the inputs the upper RBMs were trained on")
    return n


class _Frames:
    """Epochs of shuffled minibatches of the DNN's input frames, read through the trainer's own dataset, batch
    sampler and loader (``max_frames`` padded frames per utterance batch), passed through ``transform``."""

    def __init__(self, model: DnnModel, dataset, max_frames: int, options: DbnOptions, seed: int, device):
        self.model, self.dataset, self.max_frames = model, dataset, max_frames
        self.options, self.seed, self.device = options, seed, torch.device(device)

    def utterance_batches(self, key):
        sampler = FrameBatchSampler(self.dataset.num_frames, self.max_frames, shuffle=True,
                                    seed=derive_seed(self.seed, "frames", key), length_jitter=0.1)
        for batch in make_loader(self.dataset, sampler):
            x, _, _ = self.model.input_frames(batch.feats.to(self.device), batch.lengths.to(self.device))
            yield x

    def buffers(self, key, transform, generator):
        """Shuffled buffers of about ``buffer_frames`` transformed frames."""
        pending, count = [], 0
        for x in self.utterance_batches(key):
            pending.append(transform(x))
            count += x.shape[0]
            if count >= self.options.buffer_frames:
                yield _shuffled(torch.cat(pending), generator)
                pending, count = [], 0
        if pending:
            yield _shuffled(torch.cat(pending), generator)

    def input_stats(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Per-dimension mean and standard deviation of the input over every training frame (float64 sums)."""
        total, sq, n = None, None, 0
        for x in self.utterance_batches("stats"):
            x = x.double()
            total = x.sum(0) if total is None else total + x.sum(0)
            sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
            n += x.shape[0]
        mean = total / n
        std = (sq / n - mean * mean).clamp(min=0).sqrt()
        return mean.float(), std.float(), n


def _shuffled(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x[torch.randperm(x.shape[0], generator=generator, device=generator.device).to(x.device)]


def _momentum(options: DbnOptions, frames: int) -> float:
    n = frames // options.momentum_step_frames
    if n >= options.momentum_steps:
        return options.momentum_max
    return options.momentum + n * (options.momentum_max - options.momentum) / options.momentum_steps


@torch.no_grad()
def train_dbn(model: DnnModel, dataset, options: DbnOptions, seed: int, device="cpu",
              max_frames: int = 20000) -> DbnResult:
    """Train the RBM stack for ``model``'s first ``options.layers`` hidden layers on ``dataset``'s features
    (an :class:`asrkt.data.dataset.UtteranceDataset`); does not change ``model``."""
    options.check()
    num_layers = check_dbn_model(model, options.layers)
    device = torch.device(device)
    start = time.perf_counter()
    frames = _Frames(model, dataset, max_frames, options, seed, device)
    mean, std, total = frames.input_stats()
    if total < 2:
        raise AsrktError(f"dbn: {dataset.data_dir} has {total} input frame(s): too few to pre-train on")
    if options.normalize_input:
        shift, scale = mean, torch.where(std > MIN_STD, 1.0 / std.clamp(min=MIN_STD), torch.ones_like(std))
    else:
        shift, scale = torch.zeros_like(mean), torch.ones_like(std)
        if not 0.5 < float(std.mean()) < 2.0:
            logger.warning("dbn: the Gaussian-Bernoulli layer assumes unit-variance inputs, but their mean std is "
                           "%.3g (normalize_input is off)", float(std.mean()))
    shift, scale = shift.to(device), scale.to(device)
    logger.info("dbn: %d layers on %d frames of %s (input dim %d, mean std %.3g%s)", num_layers, total,
                dataset.data_dir, mean.numel(), float(std.mean()),
                ", normalised to 0 mean and unit variance" if options.normalize_input else "")
    rbms: list[Rbm] = []
    curves: list[list[float]] = []

    def transform(x):
        x = (x - shift) * scale
        for r in rbms:
            x = r.hidden_probs(x)
        return x

    units = model.config.dnn.hidden_units
    for layer in range(num_layers):
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "dbn-layer", layer))
        gauss = layer == 0
        epochs = options.gauss_epochs if gauss else options.bern_epochs
        lr = options.gauss_lr if gauss else options.bern_lr
        num_visible = mean.numel() if gauss else units
        vis_bias = None
        if not gauss:  # Kaldi: log(p / (1 - p)) of the input's mean (over the first buffer)
            first = next(frames.buffers(("dbn-bias", layer), transform, gen))
            p = first.mean(0).clamp(1e-4, 1 - 1e-4)
            vis_bias = torch.log(p / (1 - p))
        rbm = Rbm(num_visible, units, GAUSSIAN if gauss else BERNOULLI, options.param_stddev, vis_bias, gen, device)
        curve, seen, momentum_step = [], 0, 0
        for epoch in range(1, epochs + 1):
            t0, error, count = time.perf_counter(), 0.0, 0
            for buf in frames.buffers(("dbn", layer, epoch), transform, gen):
                for i in range(0, buf.shape[0], options.batch_size):
                    v = buf[i:i + options.batch_size]
                    step = seen // options.momentum_step_frames
                    if step != momentum_step:  # as Kaldi: the lr returns to its value at a momentum step
                        momentum_step, rbm.lr_scale = step, 1.0
                    error += rbm.update(v, lr, _momentum(options, seen), options.l2, gen)
                    count += v.numel()
                    seen += v.shape[0]
            curve.append(error / count)
            rbms_label = "gaussian-bernoulli" if gauss else "bernoulli-bernoulli"
            logger.info("dbn layer %d/%d (%s, %d -> %d), epoch %d/%d: reconstruction error %.5g per unit, %d frames, "
                        "lr %g, momentum %.3g, %d guarded minibatches, %.1fs", layer + 1, num_layers, rbms_label,
                        num_visible, units, epoch, epochs, curve[-1], count // num_visible, lr,
                        _momentum(options, seen), rbm.guarded, time.perf_counter() - t0)
        rbms.append(rbm)
        curves.append(curve)
    return DbnResult(rbms, shift.cpu(), scale.cpu(), curves, total, time.perf_counter() - start)


@torch.no_grad()
def load_into_dnn(model: DnnModel, result: DbnResult) -> list[str]:
    """Copy the RBMs' weights and hidden biases into the DNN's first hidden Linear layers (the input
    normalisation folded into the first); returns the names of the parameters set."""
    check_dbn_model(model, len(result.rbms))
    names = []
    for i, rbm in enumerate(result.rbms):
        linear = model.blocks[i][0]
        w, b = rbm.weight.detach().cpu(), rbm.hid_bias.detach().cpu()
        if i == 0:
            b = b - w @ (result.shift * result.scale)
            w = w * result.scale.unsqueeze(0)
        if tuple(linear.weight.shape) != tuple(w.shape):
            raise AsrktError(f"dbn: layer {i + 1} has shape {tuple(w.shape)}, the DNN's blocks.{i}.0.weight "
                             f"{tuple(linear.weight.shape)}")
        linear.weight.copy_(w)
        linear.bias.copy_(b)
        names += [f"blocks.{i}.0.weight", f"blocks.{i}.0.bias"]
    return names
