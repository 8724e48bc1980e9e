"""TLI, transfer learning by injection (data-free): initialise a model from a trained model of another
architecture by matching their parameter tensors and injecting each matched source tensor into its target.

Matching. Every floating-point tensor of the two models (ndim >= 1) has a role (input weights: a Linear's
weight or an LSTM's ``weight_ih``; recurrent weights ``weight_hh``; biases; a norm's gain or shift) and a relative
depth (its module's index among the modules that hold tensors, / (count - 1), input side first). A pair of the
same role and rank scores ``0.5 * (1 - |depth_s - depth_t|) + 0.5 * prod_d min(s_d, t_d) / max(s_d, t_d)``
(depth and shape similarity, both in [0, 1]); other pairs score 0 and are never matched. Greedy one-to-one
assignment: the best scoring free pair first (ties: the earlier target, then the earlier source).

Injection. Equal shapes are copied unchanged. Otherwise, per dimension, the source is first resized by linear
interpolation (``torch.nn.functional.interpolate``) half-way to the target size, ``m = round((s + t) / 2)``, then
centre-cropped (``m > t``) or centred inside the target (``m < t``; the target keeps its own random
initialisation around it): a mix of resize and crop/pad. LSTM tensors (``weight_ih_l*``, ``weight_hh_l*``,
``bias_ih_l*``, ``bias_hh_l*``) hold four gates along dimension 0; they are injected gate by gate (a source
LSTM's gate k into the target's gate k; any other source into each gate).

Score. The TLI score is the mean match score over the target's tensors and over the source's tensors (an
unmatched tensor counts 0), averaged over both directions: 1 for identical architectures, in (0, 1) otherwise.
:func:`inject` returns a :class:`TliResult`; the ``tli`` initialiser (:mod:`asrkt.train.methods`) logs it and
keeps the last one in ``asrkt.train.methods.LAST_TLI_RESULT`` (an initialiser only returns parameter names).
"""
from __future__ import annotations

import dataclasses
import re

import torch
import torch.nn.functional as F

GATES = 4
_LSTM_GATED = re.compile(r"(^|\.)(weight_ih|weight_hh|bias_ih|bias_hh)_l\d+(_reverse)?$")


@dataclasses.dataclass
class Match:
    target: str
    source: str
    score: float
    how: str  # "copy" | "inject"


@dataclasses.dataclass
class TliResult:
    score: float  # mean match score in both directions, in [0, 1]
    target_score: float  # mean over the target's tensors
    source_score: float  # mean over the source's tensors
    matches: list[Match]
    unmatched_target: list[str]
    unmatched_source: list[str]

    def summary(self) -> str:
        copied = sum(m.how == "copy" for m in self.matches)
        return (f"TLI score {self.score:.4f} (target {self.target_score:.4f}, source {self.source_score:.4f}); "
                f"{len(self.matches)} tensors matched ({copied} copied unchanged, {len(self.matches) - copied} "
                f"injected), {len(self.unmatched_target)} target and {len(self.unmatched_source)} source tensors "
                "unmatched")


_NORMS = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)


def role(module: torch.nn.Module, param: str) -> str:
    """What a tensor does, from its module and name: input weights (a Linear's, an LSTM's weight_ih), recurrent
    weights (weight_hh), biases, a norm's gain or shift, or another module's tensor."""
    if isinstance(module, _NORMS):
        return "norm_" + param
    if param.startswith("weight_hh"):
        return "recurrent"
    if param.startswith("bias"):
        return "bias"
    if param.startswith("weight"):
        return "weight"
    return f"{type(module).__name__}.{param}"


def tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor, str, float]]:
    """(name, tensor, role, relative depth) of every floating-point tensor of ``model`` with ndim >= 1, in the
    state dict's order; the depth is the owning module's index among the modules that hold tensors, / (count - 1)."""
    state = model.state_dict()
    owners = []
    for mod_name, module in model.named_modules():
        own = [(f"{mod_name}.{p}" if mod_name else p, p) for p, _ in
               list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))]
        own = [(n, p) for n, p in own if n in state and torch.is_floating_point(state[n]) and state[n].dim() >= 1]
        if own:
            owners.append((module, own))
    depth = {n: (i / (len(owners) - 1) if len(owners) > 1 else 0.5, role(module, p))
             for i, (module, own) in enumerate(owners) for n, p in own}
    return [(n, v, depth[n][1], depth[n][0]) for n, v in state.items() if n in depth]


def shape_similarity(a, b) -> float:
    if len(a) != len(b):
        return 0.0
    out = 1.0
    for x, y in zip(a, b):
        out *= min(x, y) / max(x, y)
    return out


def match_score(src_role: str, src_shape, src_depth: float, tgt_role: str, tgt_shape, tgt_depth: float) -> float:
    """0 for another role or rank; else the mean of the depth and the shape similarity, in (0, 1]."""
    if src_role != tgt_role or len(src_shape) != len(tgt_shape):
        return 0.0
    return 0.5 * (1.0 - abs(src_depth - tgt_depth)) + 0.5 * shape_similarity(src_shape, tgt_shape)


def match(source_model: torch.nn.Module, target_model: torch.nn.Module):
    """Greedy one-to-one matching of the tensors of two models: ``([(target, source, score)] in the target's
    order, number of target tensors, number of source tensors)``."""
    src, tgt = tensors(source_model), tensors(target_model)
    pairs = []
    for j, (tn, tv, tr, td) in enumerate(tgt):
        for i, (sn, sv, sr, sd) in enumerate(src):
            s = match_score(sr, tuple(sv.shape), sd, tr, tuple(tv.shape), td)
            if s > 0:
                pairs.append((-s, j, i))
    pairs.sort()  # best first; ties: the earlier target, then the earlier source
    used_s, used_t, out = set(), set(), []
    for neg, j, i in pairs:
        if j in used_t or i in used_s:
            continue
        used_t.add(j)
        used_s.add(i)
        out.append((j, tgt[j][0], src[i][0], -neg))
    return [m[1:] for m in sorted(out)], [t[0] for t in tgt], [t[0] for t in src]


def _resize_dim(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    if x.shape[dim] == size:
        return x
    moved = x.movedim(dim, -1)
    lead = moved.shape[:-1]
    flat = moved.reshape(-1, 1, moved.shape[-1]).float()
    out = F.interpolate(flat, size=size, mode="linear", align_corners=True) if moved.shape[-1] > 1 else \
        flat.expand(-1, -1, size)
    return out.reshape(*lead, size).movedim(-1, dim).to(x.dtype)


def inject_tensor(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """``src`` injected into a copy of ``tgt`` (half resize, then centre crop/pad per dimension)."""
    if src.shape == tgt.shape:
        return src.clone()
    x = src.to(tgt.dtype)
    for d, (s, t) in enumerate(zip(src.shape, tgt.shape)):
        x = _resize_dim(x, d, int(round((s + t) / 2)))
    out = tgt.clone()
    src_idx, dst_idx = [], []
    for m, t in zip(x.shape, tgt.shape):
        if m >= t:  # centre crop
            a = (m - t) // 2
            src_idx.append(slice(a, a + t))
            dst_idx.append(slice(0, t))
        else:  # centred inside the target
            a = (t - m) // 2
            src_idx.append(slice(0, m))
            dst_idx.append(slice(a, a + m))
    out[tuple(dst_idx)] = x[tuple(src_idx)]
    return out


def _gated(name: str, t: torch.Tensor) -> bool:
    return bool(_LSTM_GATED.search(name)) and t.shape[0] % GATES == 0


def inject_matched(src_name: str, src: torch.Tensor, tgt_name: str, tgt: torch.Tensor) -> torch.Tensor:
    if src.shape == tgt.shape or not _gated(tgt_name, tgt):
        return inject_tensor(src, tgt)
    src_chunks = src.chunk(GATES, 0) if _gated(src_name, src) else [src] * GATES
    return torch.cat([inject_tensor(s, t) for s, t in zip(src_chunks, tgt.chunk(GATES, 0))], dim=0)


@torch.no_grad()
def inject(model: torch.nn.Module, source_model: torch.nn.Module) -> TliResult:
    """Initialise ``model`` in place from ``source_model`` by TLI; returns the matches and the score."""
    source, target = source_model.state_dict(), model.state_dict()
    pairs, tgt, src = match(source_model, model)
    matches = []
    for tn, sn, score in pairs:
        how = "copy" if source[sn].shape == target[tn].shape else "inject"
        target[tn] = inject_matched(sn, source[sn].to(target[tn].device), tn, target[tn])
        matches.append(Match(tn, sn, score, how))
    model.load_state_dict(target)
    total = sum(m.score for m in matches)
    t_score = total / len(tgt) if tgt else 0.0
    s_score = total / len(src) if src else 0.0
    matched_t, matched_s = {m.target for m in matches}, {m.source for m in matches}
    return TliResult(score=(t_score + s_score) / 2, target_score=t_score, source_score=s_score, matches=matches,
                     unmatched_target=[n for n in tgt if n not in matched_t],
                     unmatched_source=[n for n in src if n not in matched_s])
