"""PKT, probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018): the student's hidden layer learns the
teacher's distribution of pairwise similarities, not its values, so the two layers may differ in size.

Over the N frames of a batch: cosine-similarity kernels ``K = X X^T`` (rows of X normalised), mapped to [0, 1]
by ``(K + 1) / 2``, row-normalised to conditional probabilities ``P[i, j] = p(j | i)``, and the loss
``sum_i KL(P_teacher[i] || P_student[i])`` (count: N). The kernel is N x N: a batch's valid frames are subsampled
to at most ``max_frames``, with a seed derived from the batch's utterance ids (the same frames on a rerun or a
resume, train and dev alike).

The loss term ``pkt`` (``loss.terms: [{name: pkt, weight: w, student_layer: -1, teacher_layer: -1}]``, on an
on-the-fly teacher given by ``--teacher-model`` or ``loss.teacher_model``) is registered in
:mod:`asrkt.train.methods`: this module holds the computation only, so that asrkt.transfer does not import
asrkt.train (whose trainer reads asrkt.transfer's dumped posteriors).
"""
from __future__ import annotations

import zlib

import torch

from asrkt.utils.errors import AsrktError

EPS = 1e-7  # Passalis & Tefas' reference code: in the norms and inside the log


def conditional_probabilities(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(N, D) -> (N, N): the cosine kernel mapped to [0, 1] and row-normalised."""
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    k = (x @ x.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """sum over rows of KL(P_teacher || P_student) for frames (N, Ds) and (N, Dt); 0 for identical inputs."""
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise AsrktError(f"pkt: need (frames, dim) representations with as many frames, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    p_s = conditional_probabilities(student.float(), eps)
    p_t = conditional_probabilities(teacher.float(), eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).sum()


def batch_seed(utts, seed: int = 0) -> int:
    """A seed that depends only on the batch's utterances (and ``seed``)."""
    return zlib.crc32(("\n".join(utts) + f"\n{seed}").encode())


def select_frames(num: int, max_frames: int, seed: int, device=None) -> torch.Tensor | None:
    """Indices of ``max_frames`` of ``num`` frames (sorted), drawn with ``seed``; None: keep all."""
    if max_frames <= 0 or num <= max_frames:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num, generator=g)[:max_frames].sort().values.to(device)


def valid_frames(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, D) and (B,) -> (frames within each utterance's length, D), utterance by utterance."""
    T = hidden.shape[1]
    mask = torch.arange(T, device=hidden.device).unsqueeze(0) < lengths.to(hidden.device).unsqueeze(1)
    return hidden[mask]


def paired_frames(student: torch.Tensor, student_lengths: torch.Tensor, teacher: torch.Tensor,
                  teacher_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid frames of a student and a teacher layer, frame by frame; AsrktError when their frame rates
    differ (PKT compares the same frames through both nets)."""
    if not torch.equal(student_lengths.cpu(), teacher_lengths.cpu()) or student.shape[0] != teacher.shape[0]:
        raise AsrktError(
            "pkt: the student and the teacher do not produce the same frames (student output lengths "
            f"{student_lengths.tolist()[:4]}, teacher {teacher_lengths.tolist()[:4]}): they must share the frame "
            "rate (model.subsampling)")
    return valid_frames(student, student_lengths), valid_frames(teacher, teacher_lengths)
