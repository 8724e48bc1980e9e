"""Dumped teacher posteriors as training targets: open a posterior dir, check it against the data, load it.

A posterior dir (written by stage 4, :mod:`asrkt.transfer.dump`) holds ``post.scp`` (over per-job arks) and
``post_info.yaml``::

    kind: log_probs | logits | topk_posterior
    num_classes: 30
    frame_shift_ms: 10.0          # of the posterior frames
    subsampling: 1                # posterior frames = feature frames / subsampling
    feature_config_hash: 3f2a...  # feats_info.yaml config_hash of the features the teacher saw
    teacher_checkpoint_sha1: ...
    temperature: 1.0              # the teacher's outputs were divided by this before being stored
    topk: 0                       # k of topk_posterior (Kaldi Posterior: class ids and probabilities)

Before a student trains, :meth:`SoftTargets.check` verifies for every utterance that it has posteriors,
that their frame count is feature frames / subsampling (floor or ceil) within an explicit tolerance, that
the class count is the model's output size and that the features are the ones the teacher saw. Every
failure is an AsrktError naming the scp, the utterance and both numbers.

Targets for the losses of :mod:`asrkt.losses.kd`:
- dense (``log_probs``, ``logits``): a float32 (frames, classes) tensor; softmax(x / T) is the same for
  logits and log-probabilities, so both are used as they are;
- ``topk_posterior``: (indices int64 (frames, k), values float32 (frames, k)) with values the teacher's
  log-probabilities and -inf where a frame has fewer than k entries, as
  :func:`asrkt.losses.kd.kd_loss_sparse_reference` wants.
A dump temperature Td != 1 is undone exactly: Td * log softmax(z / Td) = z - const per frame, and a per-frame
constant changes neither softmax(x / T) nor the renormalised top-k distribution.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
import yaml

from asrkt.transfer.layout import POST_INFO, POST_SCP  # noqa: F401 (also re-exported)
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

KINDS = ("log_probs", "logits", "topk_posterior")


@dataclasses.dataclass
class PosteriorInfo:
    """The sidecar ``post_info.yaml`` of a posterior dir."""

    kind: str
    num_classes: int
    frame_shift_ms: float
    subsampling: int
    feature_config_hash: str
    teacher_checkpoint_sha1: str
    temperature: float = 1.0
    topk: int = 0

    @property
    def sparse(self) -> bool:
        return self.kind == "topk_posterior"

    @classmethod
    def load(cls, path) -> "PosteriorInfo":
        path = Path(path)
        if not path.is_file():
            raise fail("missing: the posterior dump did not finish (rerun stage 4)", path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise fail(f"not valid YAML: {e}", path) from None
        if not isinstance(data, dict):
            raise fail("expected a mapping of keys to values", path)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise fail(f"missing keys: {', '.join(missing)}", path)
        values = {}
        for name in fields:
            if name in data:
                values[name] = data[name]
        try:
            info = cls(kind=str(values["kind"]), num_classes=int(values["num_classes"]),
                       frame_shift_ms=float(values["frame_shift_ms"]), subsampling=int(values["subsampling"]),
                       feature_config_hash=str(values["feature_config_hash"]),
                       teacher_checkpoint_sha1=str(values["teacher_checkpoint_sha1"]),
                       temperature=float(values.get("temperature", 1.0)), topk=int(values.get("topk") or 0))
        except (TypeError, ValueError) as e:
            raise fail(f"malformed value: {e}", path) from None
        if info.kind not in KINDS:
            raise fail(f"kind must be one of {', '.join(KINDS)}, got '{info.kind}'", path)
        if info.num_classes < 2 or info.subsampling < 1 or not info.temperature > 0:
            raise fail(f"need num_classes >= 2, subsampling >= 1 and temperature > 0, got {info.num_classes}, "
                       f"{info.subsampling}, {info.temperature}", path)
        return info


def frames_match(post_frames: int, feat_frames: int, subsampling: int, tolerance: int = 0) -> bool:
    """True when ``post_frames`` is floor or ceil of feat_frames / subsampling, within ``tolerance``."""
    lo, hi = feat_frames // subsampling, -(-feat_frames // subsampling)
    return lo - tolerance <= post_frames <= hi + tolerance


def posterior_to_log_topk(post, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi Posterior (per frame: (class, probability) pairs) -> (indices (T, k) int64, log-probabilities
    (T, k) float32, -inf where a frame has fewer than k entries), the k most probable entries per frame."""
    from asrkt.io import posterior_to_topk

    indices, weights = posterior_to_topk(post, k)
    with np.errstate(divide="ignore"):
        return indices, np.log(weights)


class SoftTargets:
    """Teacher targets of one posterior dir: ``targets[utt]`` -> tensor or (indices, values); see module doc.

    ``in_memory`` (default) loads the utterances asked for by :meth:`load` once; otherwise every access
    reads the ark (dense only; top-k posteriors are always held in memory, as Kaldi's Posterior format is
    read sequentially).
    """

    def __init__(self, post_dir, in_memory: bool = True):
        self.dir = Path(post_dir)
        self.info = PosteriorInfo.load(self.dir / POST_INFO)
        self.scp_path = self.dir / POST_SCP
        if not self.scp_path.is_file():
            raise fail("missing: the posterior dump did not finish (rerun stage 4)", self.scp_path)
        self.in_memory = in_memory
        self._cache: dict[str, object] = {}
        self._lazy = None
        self._keys = None

    @property
    def sparse(self) -> bool:
        return self.info.sparse

    @property
    def keys(self) -> set[str]:
        if self._keys is None:
            from asrkt.data.kaldi_dir import read_table

            self._keys = set(read_table(self.scp_path, check_sorted=False))
        return self._keys

    def __contains__(self, utt: str) -> bool:
        return utt in self.keys

    def _dense_source(self):
        if self._lazy is None:
            from asrkt.io import load_scp

            self._lazy = load_scp(self.scp_path)
        return self._lazy

    def _convert_dense(self, utt: str, mat) -> torch.Tensor:
        mat = np.asarray(mat)
        if mat.ndim != 2:
            raise fail(f"expected a (frames, classes) matrix, got shape {mat.shape}", self.scp_path, utt)
        t = torch.from_numpy(np.ascontiguousarray(mat, dtype=np.float32))
        if self.info.temperature != 1.0:
            t = t * self.info.temperature
        return t

    def _convert_sparse(self, post) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.info.topk or max((len(f) for f in post), default=1)
        indices, values = posterior_to_log_topk(post, max(k, 1))
        v = torch.from_numpy(values)
        if self.info.temperature != 1.0:
            v = v * self.info.temperature
        return torch.from_numpy(indices), v

    def load(self, utts) -> None:
        """Read the targets of ``utts`` (all of them for top-k posteriors) into memory."""
        utts = list(utts)
        missing = [u for u in utts if u not in self.keys]
        if missing:
            raise fail(f"no teacher posteriors for {len(missing)} of {len(utts)} utterances (first: "
                       f"'{missing[0]}'); were they dumped for another data dir?", self.scp_path, missing[0])
        if self.sparse:
            from asrkt.io import read_posteriors

            wanted = set(utts)
            for key, post in read_posteriors(f"scp:{self.scp_path}"):
                if key in wanted:
                    self._cache[key] = self._convert_sparse(post)
        elif self.in_memory:
            source = self._dense_source()
            for u in utts:
                self._cache[u] = self._convert_dense(u, source[u])

    def __getitem__(self, utt: str):
        if utt in self._cache:
            return self._cache[utt]
        if utt not in self.keys:
            raise fail("no teacher posteriors for this utterance", self.scp_path, utt)
        if self.sparse:
            self.load([utt])
            return self._cache[utt]
        return self._convert_dense(utt, self._dense_source()[utt])

    def num_frames(self, utt: str) -> int:
        target = self[utt]
        return int(target[0].shape[0] if isinstance(target, tuple) else target.shape[0])

    def check(self, feat_frames: dict[str, int], num_classes: int, subsampling: int, feature_config_hash: str,
              tolerance: int = 0, feats_info_path=None) -> None:
        """Check the posteriors against the training data and the model; AsrktError on the first mismatch.

        ``feat_frames``: utt -> feature frames of every utterance that will be trained on; ``num_classes``
        and ``subsampling``: the model's; ``feature_config_hash``: of the data dir's ``feats_info.yaml``
        (``feats_info_path``, named in the error).
        """
        info, info_path = self.info, self.dir / POST_INFO
        if info.num_classes != num_classes:
            raise fail(f"the teacher has {info.num_classes} output classes but the model has {num_classes}; "
                       "were the posteriors dumped with another lang dir?", info_path)
        if info.subsampling != subsampling:
            raise fail(f"posteriors are at subsampling {info.subsampling} but the model's output is at "
                       f"subsampling {subsampling}: use the same model.subsampling for teacher and student, or bring "
                       f"the posteriors to the student's rate (asrkt.bin.combine_posteriors --to-subsampling "
                       f"{subsampling})",
                       info_path)
        if info.feature_config_hash != feature_config_hash:
            raise fail(f"feature config hash {info.feature_config_hash} differs from {feature_config_hash} in "
                       f"{feats_info_path or 'the data dir'}: the teacher saw other features", info_path)
        if tolerance < 0:
            raise AsrktError(f"frame tolerance must be >= 0, got {tolerance}")
        self.load(feat_frames)
        for utt, n_feat in feat_frames.items():
            target = self[utt]
            if isinstance(target, tuple):
                n_post, cols = int(target[0].shape[0]), None
                if target[0].numel() and int(target[0].max()) >= num_classes:
                    raise fail(f"class id {int(target[0].max())} out of range for a {num_classes}-class model",
                               self.scp_path, utt)
                values = target[1]
                bad = ~torch.isfinite(values) & (values != float("-inf"))  # -inf: padding of short frames
            else:
                n_post, cols = int(target.shape[0]), int(target.shape[1])
                bad = ~torch.isfinite(target)
            if bool(bad.any()):
                raise fail(f"posteriors contain NaN or inf ({int(bad.sum())} values, first in frame "
                           f"{int(bad.nonzero()[0, 0])})", self.scp_path, utt)
            if cols is not None and cols != num_classes:
                raise fail(f"posteriors have {cols} classes but the model has {num_classes}", self.scp_path, utt)
            if not frames_match(n_post, n_feat, subsampling, tolerance):
                expected = sorted({n_feat // subsampling, -(-n_feat // subsampling)})
                raise fail(f"posteriors have {n_post} frames but the features have {n_feat} frames (expected "
                           f"{' or '.join(map(str, expected))} at subsampling {subsampling}, tolerance "
                           f"{tolerance})", self.scp_path, utt)
        logger.info("%s: %s teacher targets for %d utterances checked (%d classes, subsampling %d, tolerance %d "
                    "frames, dump temperature %g)", self.dir, info.kind, len(feat_frames), info.num_classes,
                    subsampling, tolerance, info.temperature)
