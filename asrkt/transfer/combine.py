"""Combine several teachers' dumped posteriors into one posterior dir, optionally at a student's lower frame rate.

    combine_posteriors(out_dir, [post_dir_a, post_dir_b], CombineOptions(method="dev-error", to_subsampling=3))

The inputs are post dirs of one data set (:mod:`asrkt.transfer.dump`: ``post.scp`` + ``post_info.yaml``),
dense (``log_probs``, ``logits``) or top-k (``topk_posterior``), mixed freely. Per utterance and frame the
output is a weighted mean of the teachers' distributions:

    p(c | t) = sum_i w_i * p_i(c | t),   sum_i w_i = 1

Methods (the weights w_i):

- ``average``: w_i = 1 / N;
- ``weighted``: the weights given (normalised to sum to 1);
- ``dev-error``: from each teacher's dev error rate e_i (%), w = softmax(-e / tau): with tau (percentage points,
  default 1) -> infinity all teachers weigh the same, with tau -> 0 only the best one counts; two teachers
  at 10 % and 12 % get 0.88 and 0.12 at tau = 1. A softmax rather than 1/e: it is defined for a teacher with
  no errors and tau says how strongly to prefer the better one. e_i is read from where the trainer records
  it: ``train`` (default) the dev metric (``valid_<metric>`` of summary.tsv, token or frame error rate) at the
  ``best_epoch`` of ``train_info.yaml`` (the epoch ``final.pt`` is), or ``decode_<set>`` the WER of
  ``decode_<set>/score.yaml``; in the exp dir of each teacher's checkpoint (``teacher_checkpoint`` of its
  post_info.yaml), or given (``teacher_exp_dirs``, ``dev_errors``).

Why probabilities, not log-probabilities: the mean of distributions is the mixture of the teachers, the
distribution that "average the teachers" means (SpeechBrain's multi-teacher distillation averages posteriors);
it is defined for top-k posteriors, where a class outside one teacher's top k has probability 0 (a mean of
log-probabilities would be -inf there and drop every class some teacher did not keep); and it is linear, so
pooling frames and mixing teachers commute. The mean of log-probabilities (a renormalised geometric mean, a
product of experts) sharpens where teachers agree: a different method, not offered here.

Each teacher is read at temperature 1: a dump temperature Td is undone exactly as
:class:`asrkt.transfer.soft_targets.SoftTargets` does (softmax(Td * stored values), over the k kept classes
for top-k), so teachers dumped at different temperatures combine correctly and the output has temperature 1.

Frame rates: teachers at different subsamplings, or a student at a lower rate than the teachers, need
``to_subsampling`` (the student's ``model.subsampling``); each teacher is converted by
:mod:`asrkt.transfer.framerate` (``pool`` or ``select``) before the mix, and the output is at that
subsampling, so :meth:`SoftTargets.check` applies its usual frame-count check against the student.

Output: ``post.1.ark`` + ``post.scp`` + ``post_info.yaml`` (the layout of a dump with one job), dense
log-probabilities (float32, log of max(p, smallest float32) so that a class no top-k teacher kept stays
finite), or with ``topk`` K > 0 Kaldi Posteriors of the K most probable classes renormalised over the K
kept, as a dump writes them. Default: top-k (K = the largest of the inputs') when every input is top-k,
else dense. post_info.yaml has the keys of a dump (``teacher_checkpoint_sha1`` identifies the combination:
the teachers, weights, frame rate and form, so the train and dev dirs of one combination agree, which the
trainer checks) plus ``combination`` (method, weights, dev errors, conversion) and ``teachers`` (each input's
provenance and weight).

Checks, each an AsrktError naming the post dir, the utterance and both values: every teacher has the same
utterances, classes and features (feature config and frame shift), equal frame counts (after conversion),
class ids in range, finite values; with a data dir, its features are the teachers' and every utterance's
output frames equal the student's output length ceil(feature frames / subsampling) exactly.

The output dir is built under a temporary name and renamed when complete; a rerun finds a finished one made
from the same inputs and options and keeps it (a different one is refused unless ``overwrite``).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import yaml

from asrkt.transfer.framerate import CONVERSIONS, convert_frames, rate_factor
from asrkt.transfer.layout import POST_INFO, POST_SCP, TOPK_KIND
from asrkt.transfer.soft_targets import PosteriorInfo, posterior_to_log_topk
from asrkt.utils.config import load_yaml
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.hashing import file_sha1

logger = logging.getLogger(__name__)

METHODS = ("average", "weighted", "dev-error")
ARK = "post.1.ark"  # the one archive of a combined dir (post.scp names it)
# Dense output: log(max(p, FLOOR)), finite where no top-k teacher kept a class.
FLOOR = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass
class CombineOptions:
    method: str = "average"  # average | weighted | dev-error
    weights: list[float] | None = None  # weighted: one per input
    dev_errors: list[float] | None = None  # dev-error: one per input (%); else read from each teacher's exp dir
    dev_error_source: str = "train"  # train (summary.tsv at the best epoch) | decode_<set> (score.yaml WER)
    tau: float = 1.0  # dev-error: softmax temperature in percentage points
    teacher_exp_dirs: list[str] | None = None  # dev-error: the teachers' exp dirs (default: of their checkpoints)
    to_subsampling: int | None = None  # the student's subsampling (None: the teachers', which must agree)
    conversion: str = "pool"  # pool | select, when a teacher's rate differs from to_subsampling
    topk: int | None = None  # output: None auto, 0 dense log-probabilities, K > 0 top-K Kaldi Posteriors


class TeacherPosteriors:
    """One input post dir: its sidecar, and ``probs(utt)``, the teacher's distributions at temperature 1."""

    def __init__(self, post_dir):
        from asrkt.io import load_posterior_scp, load_scp

        self.dir = Path(post_dir)
        self.info_path = self.dir / POST_INFO
        self.info = PosteriorInfo.load(self.info_path)
        self.record = load_yaml(self.info_path)
        self.scp_path = self.dir / POST_SCP
        if not self.scp_path.is_file():
            raise fail("missing: the posterior dump did not finish (run finish_posteriors)", self.scp_path)
        self.entries: Mapping = load_posterior_scp(self.scp_path) if self.info.sparse else load_scp(self.scp_path)

    @property
    def feature_shift_ms(self) -> float:
        return self.info.frame_shift_ms / self.info.subsampling

    def probs(self, utt: str) -> np.ndarray:
        """(frames, classes) float64 probabilities at temperature 1 (a dump temperature undone)."""
        C, temp = self.info.num_classes, self.info.temperature
        if self.info.sparse:
            post = self.entries[utt]
            empty = [t for t, frame in enumerate(post) if not frame]
            if empty:
                raise fail(f"frame {empty[0]} of {len(post)} has no (class, probability) pairs", self.scp_path, utt)
            indices, log_w = posterior_to_log_topk(post, max((len(f) for f in post), default=1))
            if indices.size and (int(indices.max()) >= C or int(indices.min()) < 0):
                bad = int(indices.max()) if int(indices.max()) >= C else int(indices.min())
                raise fail(f"class id {bad} out of range: {self.info_path} says {C} classes", self.scp_path, utt)
            x = log_w.astype(np.float64) * temp
        else:
            x = np.asarray(self.entries[utt], dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != C:
                raise fail(f"posteriors have {x.shape[1] if x.ndim == 2 else x.shape} classes but {self.info_path} "
                           f"says {C}", self.scp_path, utt)
            bad = ~np.isfinite(x)
            if bad.any():
                raise fail(f"posteriors contain NaN or inf ({int(bad.sum())} values, first in frame "
                           f"{int(np.argwhere(bad)[0, 0])})", self.scp_path, utt)
            x = x * temp
        x = x - x.max(axis=1, keepdims=True)
        p = np.exp(x)
        p /= p.sum(axis=1, keepdims=True)
        if not self.info.sparse:
            return p
        dense = np.zeros((len(p), C))
        np.add.at(dense, (np.repeat(np.arange(len(p)), p.shape[1]), indices.ravel()), p.ravel())
        return dense


# ------------------------------------------------------------------------------------------------- weights
def teacher_dev_error(exp_dir, source: str = "train") -> tuple[float, str, str]:
    """A teacher's dev error rate (%): ``(value, metric name, where it was read)``; see the module doc."""
    from asrkt.score.results import TRAIN_INFO, read_summary, read_train_info

    exp_dir = Path(exp_dir)
    if source == "train":
        info = read_train_info(exp_dir)
        path = exp_dir / TRAIN_INFO
        if not info:
            raise fail("missing: the teacher's training has not finished (or its exp dir is elsewhere: give "
                       "--teacher-exp-dirs, or the errors with --dev-errors)", path)
        metric, best = info.get("metric"), info.get("best_epoch")
        if not metric or best is None:
            raise fail(f"no dev metric recorded (metric {metric!r}, best_epoch {best!r}): was it trained without "
                       "a targets dir? Give --dev-errors or --dev-error-source decode_<set>", path)
        column, summary = f"valid_{metric}", exp_dir / "summary.tsv"
        for row in read_summary(exp_dir):
            if str(row.get("epoch")) == str(best):
                try:
                    return float(row[column]), metric, f"{summary} epoch {best}"
                except (KeyError, TypeError, ValueError):
                    raise fail(f"no number in column {column} at epoch {best}", summary) from None
        raise fail(f"no row for the best epoch {best} of {path}", summary)
    if source.startswith("decode_") and len(source) > len("decode_"):
        path = exp_dir / source / "score.yaml"
        if not path.is_file():
            raise fail("missing: decode the teacher on that set first (stage 7), or use --dev-error-source train",
                       path)
        score = load_yaml(path)
        if "wer" not in score:
            raise fail("no 'wer' in the score", path)
        return float(score["wer"]), "wer", str(path)
    raise AsrktError(f"--dev-error-source must be 'train' or 'decode_<set>' (e.g. decode_dev), got '{source}'")


def dev_error_weights(errors, tau: float = 1.0) -> list[float]:
    """softmax(-errors / tau): the better (lower-error) teacher weighs more."""
    if not tau > 0:
        raise AsrktError(f"--tau must be > 0, got {tau}")
    e = np.asarray(errors, dtype=np.float64)
    w = np.exp(-(e - e.min()) / tau)
    return (w / w.sum()).tolist()


def _per_teacher(values, n: int, what: str) -> list:
    if values is None or len(values) != n:
        raise AsrktError(f"{what}: expected one value per input post dir ({n}), got "
                         f"{'none' if values is None else len(values)}")
    return list(values)


def teacher_weights(teachers: list[TeacherPosteriors], opts: CombineOptions) -> tuple[list[float], dict]:
    """The normalised weights of ``opts.method`` and what they were made from (for post_info.yaml)."""
    n = len(teachers)
    if opts.method not in METHODS:
        raise AsrktError(f"--method must be one of {', '.join(METHODS)}, got '{opts.method}'")
    if opts.weights is not None and opts.method != "weighted":
        raise AsrktError(f"--weights are for --method weighted, not {opts.method}")
    if (opts.dev_errors is not None or opts.teacher_exp_dirs is not None) and opts.method != "dev-error":
        raise AsrktError(f"--dev-errors and --teacher-exp-dirs are for --method dev-error, not {opts.method}")
    if opts.method == "average":
        return [1.0 / n] * n, {}
    if opts.method == "weighted":
        given = [float(w) for w in _per_teacher(opts.weights, n, "--weights")]
        if any(not (w >= 0 and math.isfinite(w)) for w in given) or sum(given) <= 0:
            raise AsrktError(f"--weights must be finite, >= 0 and not all 0, got {given}")
        return [w / sum(given) for w in given], {"given_weights": given}
    if opts.dev_errors is not None:
        errors = [float(e) for e in _per_teacher(opts.dev_errors, n, "--dev-errors")]
        details = {"dev_errors": errors, "dev_error_source": "given", "tau": opts.tau}
    else:
        exp_dirs = (_per_teacher(opts.teacher_exp_dirs, n, "--teacher-exp-dirs")
                    if opts.teacher_exp_dirs is not None else [None] * n)
        read = []
        for t, exp in zip(teachers, exp_dirs):
            if exp is None:
                ckpt = t.record.get("teacher_checkpoint")
                if not ckpt:
                    raise fail("names no teacher_checkpoint (a combined dir?): give --teacher-exp-dirs or "
                               "--dev-errors", t.info_path)
                exp = Path(ckpt).parent
            read.append(teacher_dev_error(exp, opts.dev_error_source))
        metrics = sorted({m for _, m, _ in read})
        if len(metrics) > 1:
            raise AsrktError("the teachers' dev errors are of different metrics (" + "; ".join(
                f"{m} from {w}" for _, m, w in read) + "): they cannot be compared; give --dev-errors")
        errors = [v for v, _, _ in read]
        details = {"dev_errors": errors, "dev_error_metric": metrics[0], "dev_error_source": opts.dev_error_source,
                   "dev_errors_from": [w for _, _, w in read], "tau": opts.tau}
    if any(not (math.isfinite(e) and e >= 0) for e in errors):
        raise AsrktError(f"dev error rates must be finite and >= 0, got {errors}")
    return dev_error_weights(errors, opts.tau), details


# ------------------------------------------------------------------------------------------------- checks
def _check_teachers(teachers: list[TeacherPosteriors], to_subsampling: int | None) -> list[int]:
    """Same classes, features and utterances; returns each teacher's rate factor to the output subsampling."""
    first = teachers[0]
    dirs = [t.dir.resolve() for t in teachers]
    for i, d in enumerate(dirs):
        if d in dirs[:i]:
            raise fail("given twice as an input", teachers[i].dir)
    for t in teachers[1:]:
        a, b = first.info, t.info
        if a.num_classes != b.num_classes:
            raise fail(f"{b.num_classes} classes here but {a.num_classes} in {first.info_path}: teachers of "
                       "different targets (lang dirs) cannot be combined", t.info_path)
        if a.feature_config_hash != b.feature_config_hash:
            raise fail(f"feature config hash {b.feature_config_hash} here but {a.feature_config_hash} in "
                       f"{first.info_path}: the teachers saw different features", t.info_path)
        if not math.isclose(first.feature_shift_ms, t.feature_shift_ms, rel_tol=1e-6):
            raise fail(f"feature frame shift {t.feature_shift_ms:g} ms here but {first.feature_shift_ms:g} ms in "
                       f"{first.info_path}", t.info_path)
        if to_subsampling is None and a.subsampling != b.subsampling:
            raise fail(f"subsampling {b.subsampling} here but {a.subsampling} in {first.info_path}: give the "
                       "student's subsampling (--to-subsampling) to bring both to its frame rate", t.info_path)
    target = first.info.subsampling if to_subsampling is None else int(to_subsampling)
    factors = [rate_factor(t.info.subsampling, target, t.info_path) for t in teachers]
    keys = set(first.entries)
    for t in teachers[1:]:
        other = set(t.entries)
        for missing, have, lacking in ((keys - other, first, t), (other - keys, t, first)):
            if missing:
                utt = min(missing)
                raise fail(f"no posteriors for {len(missing)} utterance(s) that {have.scp_path} has (first: "
                           f"'{utt}'); were they dumped for different data dirs?", lacking.scp_path, utt)
    return factors


def _student_lengths(data_dir, keys, subsampling: int, feature_config_hash: str,
                     info_path) -> dict[str, tuple[int, int]]:
    """utt -> (feature frames, the student's output length) for every utterance of ``data_dir``, which must all
    have posteriors; the length computed as the models compute it (:func:`asrkt.models.subsampled_lengths`)."""
    import torch

    from asrkt.data.dataset import UtteranceDataset
    from asrkt.features.info import read_feats_info
    from asrkt.models import subsampled_lengths

    feats = read_feats_info(data_dir)
    if str(feats["config_hash"]) != feature_config_hash:
        raise fail(f"the teachers saw features of config {feature_config_hash} but {data_dir} has "
                   f"{feats['config_hash']}", info_path)
    counts = UtteranceDataset(data_dir, in_memory=False, cmvn=False).frame_counts()
    missing = [u for u in counts if u not in keys]
    if missing:
        raise fail(f"{len(missing)} utterance(s) of {data_dir} have no posteriors (first: '{missing[0]}')",
                   info_path, missing[0])
    out = subsampled_lengths(torch.tensor(list(counts.values()), dtype=torch.long), subsampling).tolist()
    return {u: (n, o) for (u, n), o in zip(counts.items(), out)}


# ------------------------------------------------------------------------------------------------- output
def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _looks_like_post_dir(path: Path) -> bool:
    return path.is_dir() and (not any(path.iterdir()) or (path / POST_SCP).exists() or (path / POST_INFO).exists())


def _relocated_scp(scp, tmp_dir: Path, final_dir: Path) -> dict[str, str]:
    """The entries of ``scp`` (written in ``tmp_dir``) naming the archive at its final place."""
    from asrkt.io import read_scp

    old, new = os.path.abspath(tmp_dir / ARK), os.path.abspath(final_dir / ARK)
    entries = {}
    for key, value in read_scp(scp, check_sorted=False).items():
        if not value.startswith(old + ":"):
            raise fail(f"unexpected entry '{value}' (expected {old}:offset)", scp, key)
        entries[key] = new + value[len(old):]
    return entries


def _topk_arrays(p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most probable classes per frame, descending, renormalised over the k kept."""
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(p, idx, axis=1)
    total = vals.sum(axis=1, keepdims=True)
    return idx, (vals / np.where(total > 0, total, 1)).astype(np.float32)


def combine_posteriors(out_dir, post_dirs, opts: CombineOptions | None = None, data_dir=None,
                       overwrite: bool = False) -> dict:
    """Write the combination of ``post_dirs`` to ``out_dir`` (see the module doc); returns its post_info."""
    from asrkt.data.tables import atomic_dir
    from asrkt.io import MatrixWriter, PosteriorWriter
    from asrkt.utils.progress import Progress
    from asrkt.utils.tables import c_sorted, write_table

    opts = opts or CombineOptions()
    out = Path(out_dir)
    if not post_dirs:
        raise AsrktError("combine_posteriors: give at least one input post dir")
    if opts.conversion not in CONVERSIONS:
        raise AsrktError(f"--conversion must be one of {', '.join(CONVERSIONS)}, got '{opts.conversion}' (concat "
                         "is not applicable to the soft-target terms: see asrkt.transfer.framerate)")
    teachers = [TeacherPosteriors(d) for d in post_dirs]
    if any(t.dir.resolve() == out.resolve() for t in teachers):
        raise fail("the output dir is also an input", out)
    factors = _check_teachers(teachers, opts.to_subsampling)
    weights, details = teacher_weights(teachers, opts)
    first = teachers[0].info
    C = first.num_classes
    subsampling = first.subsampling * factors[0]
    all_sparse = all(t.info.sparse for t in teachers)
    topk = opts.topk if opts.topk is not None else (max(t.info.topk for t in teachers) if all_sparse else 0)
    if topk < 0 or topk > C:
        raise AsrktError(f"--topk must be in [0, {C}] (0: dense), got {topk}")
    if opts.topk is None and all_sparse and topk == 0:
        raise AsrktError(f"the top-k inputs do not say their k ({teachers[0].info_path}): give --topk")
    kind = TOPK_KIND if topk else "log_probs"
    conversion = opts.conversion if any(k > 1 for k in factors) else "none"
    identity = {"teachers": [t.info.teacher_checkpoint_sha1 for t in teachers],
                "weights": [round(w, 6) for w in weights], "subsampling": subsampling, "conversion": conversion,
                "kind": kind, "topk": topk}
    request = dict(identity, inputs=[[str(t.dir.resolve()), file_sha1(t.info_path)] for t in teachers])
    request_sha1 = _digest(request)

    if (out / POST_INFO).is_file() and not overwrite:
        old = load_yaml(out / POST_INFO)
        if (old.get("combination") or {}).get("request_sha1") == request_sha1 and (out / POST_SCP).is_file():
            logger.info("%s: already combined from the same inputs and options, kept (--overwrite true to redo it)",
                        out)
            return old
        raise fail("exists and holds other posteriors (other inputs, weights or options): give --overwrite true "
                   "to replace it, or choose another output dir", out)
    if out.exists() and not _looks_like_post_dir(out):
        raise fail("exists and is not a posterior dir; refusing to replace it", out)
    student = (_student_lengths(data_dir, set(teachers[0].entries), subsampling, first.feature_config_hash,
                                teachers[0].info_path) if data_dir is not None else None)

    for i, (t, w, k) in enumerate(zip(teachers, weights, factors)):
        logger.info("teacher %s: %s, %d classes, subsampling %d (x%d, %s), weight %.4f%s", t.dir, t.info.kind,
                    C, t.info.subsampling, k, conversion, w,
                    f", dev error {details['dev_errors'][i]:g}" if "dev_errors" in details else "")
    utts = c_sorted(teachers[0].entries)
    progress = Progress(len(utts), desc="combined")
    start, frames = time.perf_counter(), 0
    with atomic_dir(out, replace_check=_looks_like_post_dir) as tmp:
        spec = f"ark,scp:{tmp / ARK},{tmp / 'post.1.scp'}"
        with (PosteriorWriter(spec) if topk else MatrixWriter(spec)) as writer:
            for utt in utts:
                mix, ref = None, None
                for t, w, k in zip(teachers, weights, factors):
                    p = t.probs(utt)
                    q = convert_frames(p, k, opts.conversion)
                    if ref is None:
                        ref = (t, len(p), len(q))
                    elif len(q) != ref[2]:
                        rt, rn, rq = ref
                        raise fail(f"{len(p)} frames at subsampling {t.info.subsampling} ({len(q)} at subsampling "
                                   f"{subsampling}) here but {rn} at subsampling {rt.info.subsampling} ({rq}) in "
                                   f"{rt.scp_path}: were they dumped from the same features?", t.scp_path, utt)
                    mix = w * q if mix is None else mix + w * q
                if student is not None and utt in student and student[utt][1] != len(mix):
                    n_feat, n_out = student[utt]
                    raise fail(f"{len(mix)} posterior frames at subsampling {subsampling} but the student's output "
                               f"has {n_out} (ceil({n_feat} feature frames / {subsampling})); teacher frames: "
                               + ", ".join(f"{t.dir}: {t.probs(utt).shape[0]} at subsampling {t.info.subsampling}"
                                           for t in teachers), teachers[0].scp_path, utt)
                if topk:
                    writer.write_topk(utt, *_topk_arrays(mix, topk))
                else:
                    writer.write(utt, np.log(np.maximum(mix, FLOOR)).astype(np.float32))
                frames += len(mix)
                progress.update(1, len(mix))
        progress.close()
        write_table(tmp / POST_SCP, _relocated_scp(tmp / "post.1.scp", tmp, out))
        (tmp / "post.1.scp").unlink()
        nbytes = (tmp / ARK).stat().st_size
        info = {
            "kind": kind, "num_classes": C, "topk": topk, "frame_shift_ms": teachers[0].feature_shift_ms * subsampling,
            "subsampling": subsampling, "feature_config_hash": first.feature_config_hash,
            "teacher_checkpoint_sha1": _digest(identity), "temperature": 1.0,
            "num_utts": len(utts), "num_frames": frames, "bytes": nbytes,
            "bytes_per_frame": round(nbytes / frames, 2) if frames else None, "nj": 1,
            "seconds": round(time.perf_counter() - start, 3),
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "combination": {"method": opts.method, "space": "prob", "weights": [round(w, 6) for w in weights],
                            **details, "conversion": conversion, "request_sha1": request_sha1},
            "teachers": [{"post_dir": str(t.dir.resolve()), "weight": round(w, 6), "rate_factor": k,
                          **{key: t.record.get(key) for key in ("kind", "num_classes", "topk", "subsampling",
                                                                 "frame_shift_ms", "temperature", "teacher_checkpoint",
                                                                 "teacher_checkpoint_sha1") if key in t.record}}
                         for t, w, k in zip(teachers, weights, factors)],
        }
        (tmp / POST_INFO).write_text(yaml.safe_dump(info, sort_keys=False), encoding="utf-8")
    logger.info("%s: %d utterances, %d frames (%s, subsampling %d) from %d teachers (%s)", out, len(utts), frames,
                kind, subsampling, len(teachers), opts.method)
    return info
