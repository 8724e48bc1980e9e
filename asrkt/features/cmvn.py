"""Cepstral mean (and variance) normalisation with Kaldi's stats layout and apply-cmvn semantics.

Stats are a float64 ``(2, D+1)`` matrix, exactly Kaldi's ``cmvn.ark`` entries: row 0 holds the per-dimension
sums and, in the last column, the frame count; row 1 holds the sums of squares (last column unused, 0).
Stats are accumulated per speaker (``spk2utt``) and stored in ``cmvn.scp`` keyed by speaker, as Kaldi's
``compute-cmvn-stats --spk2utt`` does; normalisation is applied on the fly when features are read.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from asrkt.utils.tables import read_table
from asrkt.io import load_scp
from asrkt.utils.errors import AsrktError, fail


def compute_cmvn_stats(matrices: Iterable[np.ndarray], source=None) -> np.ndarray:
    """Accumulate Kaldi CMVN stats over feature matrices ``(frames, D)``; returns float64 ``(2, D+1)``."""
    stats = None
    for i, feats in enumerate(matrices):
        feats = np.asarray(feats)
        if feats.ndim != 2:
            raise fail(f"matrix {i}: expected a 2-D feature matrix, got shape {feats.shape}", source)
        if stats is None:
            stats = np.zeros((2, feats.shape[1] + 1), dtype=np.float64)
        elif feats.shape[1] != stats.shape[1] - 1:
            raise fail(f"matrix {i}: dimension {feats.shape[1]} differs from the first matrix's "
                       f"{stats.shape[1] - 1}", source)
        f64 = feats.astype(np.float64)
        stats[0, :-1] += f64.sum(axis=0)
        stats[0, -1] += feats.shape[0]
        stats[1, :-1] += (f64 * f64).sum(axis=0)
    if stats is None:
        raise fail("no feature matrices to compute CMVN stats from", source)
    return stats


class SpeakerStats:
    """Accumulate per-speaker CMVN stats from ``(utt, feats)`` pairs (``compute-cmvn-stats --spk2utt``)."""

    def __init__(self, utt2spk: Mapping[str, str], source=None):
        self.utt2spk = utt2spk
        self.source = source  # the utt2spk file, for messages
        self.stats: dict[str, np.ndarray] = {}

    def add(self, utt: str, feats: np.ndarray) -> None:
        spk = self.utt2spk.get(utt)
        if spk is None:
            raise fail("utterance has features but is not in utt2spk", self.source, utt)
        feats = np.asarray(feats)
        if spk not in self.stats:
            self.stats[spk] = compute_cmvn_stats([feats], source=self.source)
            return
        acc = self.stats[spk]
        if feats.ndim != 2 or feats.shape[1] != acc.shape[1] - 1:
            raise fail(f"feature shape {feats.shape} differs in dimension from speaker '{spk}''s other "
                       f"utterances ({acc.shape[1] - 1})", self.source, utt)
        acc += compute_cmvn_stats([feats])


def apply_cmvn(feats: np.ndarray, stats: np.ndarray, norm_vars: bool = False, utt=None,
               source=None) -> np.ndarray:
    """Normalise ``feats`` with ``stats`` as Kaldi's ``apply-cmvn [--norm-vars]``; returns a float32 copy.

    Subtracts the mean; with ``norm_vars`` also divides by the standard deviation (variance floored at
    1e-20, as Kaldi). 1-row (mean-only) stats are accepted when ``norm_vars`` is false.
    """
    import kaldi_native_fbank as knf

    feats = np.asarray(feats, dtype=np.float32)
    stats = np.asarray(stats, dtype=np.float64)
    if feats.ndim != 2:
        raise fail(f"expected a 2-D feature matrix, got shape {feats.shape}", source, utt)
    if stats.ndim != 2 or stats.shape[0] not in (1, 2) or stats.shape[1] != feats.shape[1] + 1:
        raise fail(f"CMVN stats of shape {stats.shape} do not fit features of dimension {feats.shape[1]} "
                   f"(expected (2, {feats.shape[1] + 1}))", source, utt)
    if norm_vars and stats.shape[0] != 2:
        raise fail("norm_vars needs 2-row CMVN stats (sums of squares), got 1 row", source, utt)
    count = stats[0, -1]
    if count < 1.0:
        raise fail(f"insufficient CMVN stats: frame count {count:g} < 1", source, utt)
    return knf.apply_cmvn(stats, knf.CmvnOptions(norm_vars=norm_vars), np.ascontiguousarray(feats))


class CmvnApplier:
    """Per-speaker CMVN for a data dir: ``applier(utt, feats)`` -> normalised feats.

    Reads ``<data_dir>/cmvn.scp`` (speaker -> stats) and ``<data_dir>/utt2spk``; stats are loaded once per
    speaker. Utterances without a speaker, or speakers without stats, are AsrktErrors naming the file.
    """

    def __init__(self, data_dir, norm_vars: bool = False):
        self.data_dir = Path(data_dir)
        self.norm_vars = norm_vars
        self.cmvn_scp_path = self.data_dir / "cmvn.scp"
        self.utt2spk_path = self.data_dir / "utt2spk"
        if not self.cmvn_scp_path.is_file():
            raise fail("missing: compute features and CMVN stats first (make_fbank.sh)", self.cmvn_scp_path)
        self.utt2spk = read_table(self.utt2spk_path)
        self._scp = load_scp(self.cmvn_scp_path)  # lazy: stats are read when first needed
        self._cache: dict[str, np.ndarray] = {}

    def stats(self, spk: str) -> np.ndarray:
        if spk not in self._cache:
            if spk not in self._scp:
                raise AsrktError(f"{self.cmvn_scp_path}: no CMVN stats for speaker '{spk}' (cmvn.scp is stale? "
                                 "rerun the feature stage)")
            self._cache[spk] = np.asarray(self._scp[spk], dtype=np.float64)
        return self._cache[spk]

    def __call__(self, utt: str, feats: np.ndarray) -> np.ndarray:
        spk = self.utt2spk.get(utt)
        if spk is None:
            raise fail("utterance not in utt2spk", self.utt2spk_path, utt)
        return apply_cmvn(feats, self.stats(spk), self.norm_vars, utt=utt, source=self.cmvn_scp_path)
