"""Inference input: a data dir's CMVN'd features in length-sorted batches of bounded size, for a given model.

Shared by decoding and posterior dumping: the same dataset and frame-budget batching as training
(:mod:`asrkt.data.dataset`), without shuffling, so similar lengths share a batch and padding stays small.
"""
from __future__ import annotations

import logging
from pathlib import Path

from asrkt.data.dataset import FrameBatchSampler, UtteranceDataset, make_loader
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


def load_checkpoint(path, what: str = "model", device="cpu"):
    """``(model, meta)`` from an asrkt checkpoint, in eval mode on ``device``; AsrktError naming a missing file."""
    from asrkt.models import load_model

    path = Path(path)
    if not path.exists():
        raise fail(f"{what} checkpoint not found", path)
    model, meta = load_model(path, map_location="cpu")
    model.to(device)
    model.eval()
    return model, meta


def inference_loader(data_dir, batch_frames: int, in_memory: bool = False, pin_memory: bool = False):
    """``(dataset, loader)`` over every utterance of ``data_dir``'s feats.scp; batches are
    :class:`asrkt.data.dataset.Batch` (utts, feats (B, T, D), lengths (B,)) of at most ``batch_frames``
    padded frames, shortest utterances first."""
    if batch_frames < 1:
        raise AsrktError(f"batch frames must be >= 1, got {batch_frames}")
    dataset = UtteranceDataset(data_dir, in_memory=in_memory)
    sampler = FrameBatchSampler(dataset.num_frames, max_frames=batch_frames, shuffle=False)
    return dataset, make_loader(dataset, sampler, pin_memory=pin_memory)


def check_model_input(model, dataset: UtteranceDataset, model_path) -> None:
    """The model must take the data dir's feature dimension."""
    if dataset.feat_dim != model.input_dim:
        raise AsrktError(f"{dataset.feats_scp_path}: features have dimension {dataset.feat_dim} but the model "
                         f"{model_path} takes {model.input_dim}; were they computed with the training fbank config?")
