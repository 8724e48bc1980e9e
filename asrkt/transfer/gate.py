"""The teacher sanity gate of stage 4: a teacher whose dev output is degenerate must not have its posteriors
dumped, because a student can learn nothing from them (measured on AN4: a CTC teacher at 100 % dev token error
that emits only blanks, and a KT student that then spent ten minutes learning blanks).

The teacher runs over the dev set through its objective (:mod:`asrkt.targets`): the dev metric (token or frame
error rate) must stay below ``max_error_rate`` and the objective must not call the outputs degenerate (CTC:
blanks only).
"""
from __future__ import annotations

import logging

import torch

from asrkt.decode.batches import check_model_input, inference_loader, load_checkpoint
from asrkt.targets import build_objective
from asrkt.utils.device import resolve_device
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)


def check_teacher(model_path, data_dir, targets_dir, max_error_rate: float = 95.0, batch_frames: int = 20000,
                  device: str = "auto") -> dict:
    """Run the teacher over ``data_dir``; AsrktError (naming the model, the data and what to do) when it is
    degenerate. Returns ``{"metric": name, "error_rate": %, "frames": n}``."""
    dev = resolve_device(device)
    model, meta = load_checkpoint(model_path, "teacher", device=dev)
    objective = build_objective(str(meta.get("objective") or "ctc"), targets_dir)
    if objective.num_classes != model.num_classes:
        raise AsrktError(f"{model_path}: the teacher outputs {model.num_classes} classes but {targets_dir} has "
                         f"{objective.num_classes}: check with the targets it was trained on")
    dataset, loader = inference_loader(data_dir, batch_frames)
    check_model_input(model, dataset, model_path)
    dataset.add_source("hard_targets", objective.target_source(data_dir, dataset.utts, model.subsampling))
    errors = units = frames = 0
    reasons = set()
    with torch.inference_mode():
        for batch in loader:
            logits, out_lengths = model(batch.feats.to(dev), batch.lengths.to(dev))
            e, u = objective.errors(logits, out_lengths, batch.inputs["hard_targets"])
            errors, units, frames = errors + e, units + u, frames + int(out_lengths.sum())
            why = objective.degenerate(logits, out_lengths)
            reasons.add(why)
    rate = 100.0 * errors / max(units, 1)
    problems = []
    if rate >= max_error_rate:
        problems.append(f"dev {objective.metric} {rate:.2f}% >= {max_error_rate:g}%")
    if None not in reasons and reasons:  # degenerate in every batch
        problems.append(sorted(reasons)[0])
    if problems:
        raise AsrktError(
            f"{model_path}: the teacher is degenerate on {data_dir} ({'; '.join(problems)}); its posteriors would "
            "teach nothing. Train it longer or with another schedule (see its summary.tsv and train_curves.png), "
            "then rerun stage 3 with --overwrite true; or lower --max-error-rate if this is intended")
    logger.info("teacher %s on %s: dev %s %.2f%% over %d output frames: fit to teach", model_path, data_dir,
                objective.metric, rate, frames)
    return {"metric": objective.metric, "error_rate": rate, "frames": frames}
