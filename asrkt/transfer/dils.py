"""DILS, depth-incremental learning: deepen a trained DNN by inserting a hidden layer on top of its last hidden
layer, initialised so that the deeper net computes the same function at insertion; then train on, and repeat.

* ReLU blocks: exact. The new block is ``ReLU(I h + 0)`` and ``h >= 0`` after the ReLU below, so it passes
  ``h`` through unchanged. It has no norm layer (a layer or batch norm cannot be an identity: it normalises
  each frame, or the batch): the model config's ``dnn.plain_top_layers`` counts such blocks, so checkpoints and
  resumed runs rebuild them.
* sigmoid / tanh blocks: approximate. The new layer's ``W, b`` are a least-squares fit of ``act^-1(h)`` from
  ``h`` on a sample of activations, refined by L-BFGS on ``||act(W h + b) - h||^2``, and then the output layer is refitted (least squares again) to map the new
  layer's output to the old logits. :func:`insert_layer` returns the largest logit difference on the sample.

DNN only: an LSTM layer cannot pass its input through unchanged (its output is ``o * tanh(c)``), so an LSTM is
refused rather than deepened approximately.

The epoch hook ``dils`` (``hooks: [{name: dils, every: 2, max_layers: 6}]``) is registered in
:mod:`asrkt.train.methods`; this module holds the insertion only.
"""
from __future__ import annotations

import copy
import dataclasses

import torch

from asrkt.models import DnnModel, build_model
from asrkt.utils.errors import AsrktError

CLAMP = 1e-4  # keep act^-1 finite: sigmoid outputs into [CLAMP, 1 - CLAMP], tanh into [-1 + CLAMP, 1 - CLAMP]
REFINE_STEPS = 200  # L-BFGS iterations of the nonlinear least-squares refinement
RIDGE = 1e-4  # ridge term of the least-squares fits (relative to the mean diagonal)


def deeper_config(model: DnnModel):
    """The model config with one more hidden layer, the new top one without norm."""
    d = model.config.dnn
    dnn = dataclasses.replace(d, hidden_layers=d.hidden_layers + 1, plain_top_layers=d.plain_top_layers + 1)
    return dataclasses.replace(model.config, dnn=dnn)


def check_deepenable(model) -> None:
    if not isinstance(model, DnnModel):
        raise AsrktError(f"dils: can only deepen a DNN (model.type dnn), not {type(model).__name__}: an LSTM layer "
                         "cannot be inserted so that the net computes the same function")


def _lstsq(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) minimising ||x W^T + b - y||^2 + ridge ||W||^2 (float64)."""
    x, y = x.double(), y.double()
    xa = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    gram = xa.t() @ xa
    reg = RIDGE * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=x.dtype)
    reg[-1, -1] = 0.0
    sol = torch.linalg.solve(gram + reg, xa.t() @ y)  # (D + 1, out)
    return sol[:-1].t().float(), sol[-1].float()


def insert_layer(model: DnnModel, sample_hidden: torch.Tensor | None = None):
    """A copy of ``model`` with one more hidden layer on top, computing the same function (exactly for ReLU).

    ``sample_hidden``: (frames, hidden_units) outputs of the last hidden layer on real data, needed for sigmoid
    and tanh. Returns ``(new model, largest |logit difference| on the sample or 0.0 for the exact case)``.
    """
    check_deepenable(model)
    d = model.config.dnn
    new = build_model(deeper_config(model), model.input_dim, model.num_classes)
    state = new.state_dict()
    state.update(copy.deepcopy(model.state_dict()))  # every old tensor keeps its name (blocks.i.*, output_layer.*)
    n = d.hidden_layers
    units = d.hidden_units
    error = 0.0
    if d.activation == "relu":
        state[f"blocks.{n}.0.weight"] = torch.eye(units)
        state[f"blocks.{n}.0.bias"] = torch.zeros(units)
    else:
        if sample_hidden is None or sample_hidden.shape[0] < 2:
            raise AsrktError(f"dils: a {d.activation} layer is fitted by least squares on a sample of activations;"
                             " none was given")
        h = sample_hidden.detach().cpu().float()
        if d.activation == "sigmoid":
            target = torch.logit(h.clamp(CLAMP, 1 - CLAMP))
            act = torch.sigmoid
        else:
            target = torch.atanh(h.clamp(-1 + CLAMP, 1 - CLAMP))
            act = torch.tanh
        w, b = _refine(h, *_lstsq(h, target), act)
        g = act(h @ w.t() + b)
        old_logits = model.output_layer(h.to(model.output_layer.weight.device)).detach().cpu()
        ow, ob = _lstsq(g, old_logits)
        state[f"blocks.{n}.0.weight"], state[f"blocks.{n}.0.bias"] = w, b
        state["output_layer.weight"], state["output_layer.bias"] = ow, ob
        error = float((g @ ow.t() + ob - old_logits).abs().max())
    new.load_state_dict(state)
    new.to(next(model.parameters()).device)
    new.train(model.training)
    return new, error


def _refine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, act, steps: int = REFINE_STEPS):
    """Nonlinear least squares from the linear fit: L-BFGS on ||act(h W^T + b) - h||^2."""
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (act(h @ w.t() + b) - h).pow(2).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


@torch.no_grad()
def sample_last_hidden(model: DnnModel, feats_list, max_frames: int) -> torch.Tensor:
    """The last hidden layer's outputs (eval mode) on utterances ``feats_list`` ((T, D) each), up to
    ``max_frames`` frames."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs, total = [], 0
    for feats in feats_list:
        h, n = model.forward_hidden(feats.unsqueeze(0).to(device), torch.tensor([feats.shape[0]]))
        outs.append(h[0, :int(n[0])].cpu())
        total += outs[-1].shape[0]
        if total >= max_frames:
            break
    model.train(was_training)
    if not outs:
        raise AsrktError("dils: no utterance to sample activations from")
    return torch.cat(outs)[:max_frames]


DEPTH_COLUMNS = ("hidden_layers", "epochs", "first_epoch", "last_epoch", "best_epoch", "best_valid_loss",
                 "train_time_s", "cumulative_time_s")


def depths_table(history: list[dict], metric: str | None = None) -> str:
    """A TSV of a DILS run's depths from the trainer's summary rows (each with ``hidden_layers``): the epochs
    trained at each depth, the best accepted dev loss (and dev ``metric`` there) and the time (train and dev
    passes) spent at it and up to its end."""
    columns = list(DEPTH_COLUMNS) + ([f"best_valid_{metric}"] if metric else [])
    lines, total = ["\t".join(columns)], 0.0
    by_depth: dict[int, list[dict]] = {}
    for row in history:
        if "hidden_layers" in row:
            by_depth.setdefault(int(row["hidden_layers"]), []).append(row)
    for depth, rows in sorted(by_depth.items()):
        seconds = sum(float(r.get("epoch_time_s", 0.0)) for r in rows)
        total += seconds
        accepted = [r for r in rows if r.get("decision") == "accepted"]
        best = min(accepted, key=lambda r: float(r["valid_loss"])) if accepted else None
        cells = [depth, len(rows), rows[0]["epoch"], rows[-1]["epoch"], best["epoch"] if best else "",
                 f"{float(best['valid_loss']):.4f}" if best else "", f"{seconds:.2f}", f"{total:.2f}"]
        if metric:
            value = best.get(f"valid_{metric}") if best else None
            cells.append("" if value is None else f"{float(value):.2f}")
        lines.append("\t".join(str(c) for c in cells))
    return "\n".join(lines) + "\n"
