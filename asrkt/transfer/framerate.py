"""Teacher posteriors at the student's frame rate: a teacher at subsampling s_t, a student at s_s = k * s_t.

A model's output frame j covers input frames ``[j * s, (j + 1) * s)`` and it has ``ceil(T / s)`` of them
(:func:`asrkt.models.subsampled_lengths`; the last group is completed with the utterance's own last frame).
Student frame j therefore covers teacher frames ``[j * k, (j + 1) * k)``, and since
``ceil(ceil(T / s_t) / k) == ceil(T / (k * s_t))`` a teacher with ``n`` frames converts to exactly the
student's ``ceil(n / k)`` frames, whatever the feature length behind ``n`` was. Conversions, per student frame:

- ``pool``: the mean of the (up to) k teacher distributions of its group, renormalised; the last group may be
  shorter and is the mean of the frames it has (as the student's own last group repeats real frames only);
- ``select``: the distribution of one teacher frame of the group, its middle one (``j * k + (k - 1) // 2``,
  for k = 3 the second of three; the last frame of the utterance when the last group is shorter).

Concatenating the k teacher frames (icefall's MVQ distillation does this for codebook indexes) is not offered:
it gives k * C targets per student frame, which the soft-target terms (``kd``, ``kd_dense``, ``kd_topk``: a
KL divergence between two distributions over the same C classes) cannot use; it would need a student output
head of size k * C trained by a different loss. The conversion runs when posteriors are combined
(:mod:`asrkt.transfer.combine`, ``combine_posteriors --to-subsampling``), so that the converted post dir is at the
student's subsampling and the trainer's usual frame-count checks apply unchanged.
"""
from __future__ import annotations

import numpy as np

from asrkt.utils.errors import AsrktError

CONVERSIONS = ("pool", "select")


def rate_factor(from_subsampling: int, to_subsampling: int, where=None) -> int:
    """k such that ``to_subsampling == k * from_subsampling``; AsrktError naming ``where`` otherwise."""
    if to_subsampling < 1 or from_subsampling < 1 or to_subsampling % from_subsampling:
        loc = f"{where}: " if where is not None else ""
        hint = ("(a coarser teacher cannot be brought to a finer student)" if to_subsampling < from_subsampling
                else "(the student's subsampling must be a multiple of the teacher's)")
        raise AsrktError(f"{loc}posteriors at subsampling {from_subsampling} cannot be converted to subsampling "
                         f"{to_subsampling} {hint}")
    return to_subsampling // from_subsampling


def converted_frames(num_frames: int, k: int) -> int:
    """Frames after conversion by a factor ``k``: ceil(num_frames / k), the student's output length."""
    return -(-int(num_frames) // k)


def pool_frames(probs: np.ndarray, k: int) -> np.ndarray:
    """(T, C) probabilities -> (ceil(T / k), C): the mean of each group of k frames (the last group: of the
    frames it has), each row renormalised to sum to 1."""
    probs = np.asarray(probs)
    if k == 1:
        return probs
    T, C = probs.shape
    groups = converted_frames(T, k)
    padded = np.zeros((groups * k, C), dtype=probs.dtype)
    padded[:T] = probs
    sums = padded.reshape(groups, k, C).sum(axis=1)
    total = sums.sum(axis=1, keepdims=True)
    return sums / np.where(total > 0, total, 1)  # the mean of distributions, renormalised (float drift)


def select_frames(probs: np.ndarray, k: int) -> np.ndarray:
    """(T, C) -> (ceil(T / k), C): the middle frame of each group of k (the last frame for a short last group)."""
    probs = np.asarray(probs)
    if k == 1:
        return probs
    T = probs.shape[0]
    idx = np.minimum(np.arange(converted_frames(T, k)) * k + (k - 1) // 2, T - 1)
    return probs[idx]


def convert_frames(probs: np.ndarray, k: int, method: str = "pool") -> np.ndarray:
    """Bring (T, C) probabilities at a teacher's rate to a rate k times lower with ``method`` (pool, select)."""
    if method == "pool":
        return pool_frames(probs, k)
    if method == "select":
        return select_frames(probs, k)
    raise AsrktError(f"frame-rate conversion must be one of {', '.join(CONVERSIONS)}, got '{method}' (concat "
                     "is not applicable: see asrkt.transfer.framerate)")
