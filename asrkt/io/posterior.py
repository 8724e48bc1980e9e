"""Kaldi's Posterior type (per frame a list of ``(class-id, weight)`` pairs) through kaldi-native-io.

This is the sparse top-k form of teacher posteriors that Kaldi nnet1 can train on directly
(``nnet-train-frmshuff --targets=ark:post.ark``). The dense form (frames x classes matrices) goes through
:mod:`asrkt.io.ark`; temporary names, pipes and errors are :mod:`asrkt.io.kaldi`'s.
"""
from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import kaldi_native_io as kni
import numpy as np

from asrkt.io.kaldi import KaldiFailure, TableWriter, check_key, iter_table, kaldi_call, safe
from asrkt.io.scp import read_scp
from asrkt.io.specifiers import parse_rspecifier
from asrkt.utils.errors import AsrktError, fail

Posterior = list[list[tuple[int, float]]]


def read_posteriors(rspecifier: str) -> Iterator[tuple[str, Posterior]]:
    """Iterate ``(key, posterior)`` over a Posterior rspecifier (``ark:``, ``scp:``, pipes, stdin).

    A truncated or corrupt archive is an AsrktError naming the table and the last good utterance.
    """
    spec = parse_rspecifier(rspecifier)
    if spec.kind == "scp" and spec.is_file:
        read_scp(spec.target, check_sorted=False)  # our file:line messages for a bad script
    return iter_table(kni.SequentialPosteriorReader, spec, what="posteriors")


class PosteriorScp(Mapping):
    """Lazy random access ``key -> posterior`` over a Posterior script file.

    The kni reader is opened on first access and reopened in a forked process (DataLoader workers), because an
    inherited file handle would share its offset with the parent.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._entries = read_scp(self.path, check_sorted=False)
        self._reader = None
        self._pid = None

    def __getitem__(self, key: str) -> Posterior:
        if key not in self._entries:
            raise KeyError(key)
        try:
            if self._reader is None or self._pid != os.getpid():
                self._reader = kaldi_call(safe(kni.RandomAccessPosteriorReader), f"scp:{self.path}")[0]
                self._pid = os.getpid()
            return kaldi_call(self._reader.__getitem__, key)[0]
        except KaldiFailure as e:
            raise fail(f"cannot read posterior ({self._entries[key]}): {e}", path=self.path, utt=key) from None

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries


def load_posterior_scp(path) -> PosteriorScp:
    """A lazy mapping ``key -> posterior`` over a Posterior .scp (checked now, read on access)."""
    return PosteriorScp(path)


def _as_posterior(post, where, key) -> Posterior:
    try:
        return [[(int(i), float(w)) for i, w in frame] for frame in post]
    except (TypeError, ValueError) as e:
        raise fail(f"posterior must be a list (frames) of lists of (class-id, weight) pairs: {e}", path=where,
                   utt=key) from None


class PosteriorWriter(TableWriter):
    """Write Kaldi Posteriors to a wspecifier (``ark:p.ark``, ``ark,scp:p.ark,p.scp``, ``ark,t:-``, ``ark:| cmd``).

    A context manager like :class:`asrkt.io.ark.MatrixWriter`: temporary names, renamed on success, removed on
    an exception (an older output is left untouched).
    """

    _default_cls = kni.PosteriorWriter

    def __init__(self, wspecifier: str):
        super().__init__(wspecifier)
        self._open(kni.PosteriorWriter)

    def write(self, key: str, posterior) -> None:
        """``posterior``: per frame a list of ``(class-id, weight)`` pairs (numpy scalars are fine)."""
        if self._closed:
            raise AsrktError(f"{self.spec.spec}: write after close")
        check_key(key, self.spec.ark, self._keys)
        try:
            self._put(key, posterior)  # kni converts (and checks) the nested lists itself: the fast path
        except TypeError:
            self._put(key, _as_posterior(posterior, self.spec.ark, key))

    def write_topk(self, key: str, indices, values) -> None:
        """Write top-k arrays (see :func:`topk_to_posterior`): the fast path of a teacher dump. The cyclic
        garbage collector is paused meanwhile: the many short-lived pairs would trigger it for nothing (they
        hold no cycles), which doubled the conversion time."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            self.write(key, topk_to_posterior(indices, values))
        finally:
            if enabled:
                gc.enable()


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def topk_to_posterior(indices, values) -> Posterior:
    """Top-k ``indices`` (T, k) and probabilities ``values`` (T, k) -> Posterior, dropping padding
    (weight 0, -inf or NaN, or a negative index). Values must be probabilities, not log-probabilities.

    Vectorised: the arrays become Python lists in C (``tolist``) zipped into pairs; only frames with padding
    are filtered pair by pair. The result goes to kni as it is (:meth:`PosteriorWriter.write` does not copy it).
    """
    idx, val = _numpy(indices), _numpy(values)
    if idx.shape != val.shape or idx.ndim != 2:
        raise AsrktError(f"topk_to_posterior: indices {idx.shape} and values {val.shape} must both be (T, k)")
    if not np.issubdtype(idx.dtype, np.integer):
        raise AsrktError(f"topk_to_posterior: indices must be integers, got {idx.dtype}")
    if not np.issubdtype(val.dtype, np.floating):
        val = val.astype(np.float64)
    finite = np.isfinite(val)
    all_finite = bool(finite.all())
    fv = val if all_finite else val[finite]
    if fv.size and (fv.min() < 0 or fv.max() > 1 + 1e-4):
        raise AsrktError("topk_to_posterior: values must be probabilities in [0, 1] "
                         f"(got min {fv.min():.4g}, max {fv.max():.4g}); for log-probabilities pass exp(values)")
    keep = (val > 0) & (idx >= 0)
    if not all_finite:
        keep &= finite
    if keep.all():  # the usual case: one flat list of pairs, cut into frames
        k = idx.shape[1]
        pairs = list(zip(idx.ravel().tolist(), val.ravel().tolist()))
        return [pairs[i:i + k] for i in range(0, len(pairs), k)] if k else [[] for _ in range(len(idx))]
    full = keep.all(axis=1).tolist()
    return [list(zip(ri, rv)) if f else [(i, w) for i, w, k in zip(ri, rv, rk) if k]
            for ri, rv, rk, f in zip(idx.tolist(), val.tolist(), keep.tolist(), full)]


def posterior_to_topk(post, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior -> (indices int64 (T, k), weights float32 (T, k)): per frame the k largest weights in
    descending order (ties keep their order), padded with index 0 and weight 0.0."""
    if k < 1:
        raise AsrktError(f"posterior_to_topk: k must be >= 1, got {k}")
    T = len(post)
    indices = np.zeros((T, k), dtype=np.int64)
    weights = np.zeros((T, k), dtype=np.float32)
    lens = np.fromiter((len(f) for f in post), dtype=np.int64, count=T)
    if not lens.sum():
        return indices, weights
    pairs = np.array([p for f in post for p in f], dtype=np.float64)
    ids, ws = pairs[:, 0].astype(np.int64), pairs[:, 1]
    frame = np.repeat(np.arange(T), lens)
    if np.isnan(ws).any():
        raise AsrktError(f"posterior_to_topk: NaN weight at frame {frame[np.isnan(ws)][0]}")
    order = np.lexsort((-ws, frame))  # by frame, then by descending weight; stable
    rank = np.arange(len(ws)) - np.repeat(np.cumsum(lens) - lens, lens)
    sel = rank < k
    indices[frame[sel], rank[sel]] = ids[order][sel]
    weights[frame[sel], rank[sel]] = ws[order][sel]
    return indices, weights
