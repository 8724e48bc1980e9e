"""Dump a teacher's per-frame outputs to Kaldi archives, and finish a posterior dir (merged scp + sidecar).

One dump job (:func:`dump_posteriors`) runs the teacher over a data dir (usually one split of it) in eval mode
under ``torch.inference_mode`` and writes, per utterance, at the teacher's output frame rate:

- ``log_probs`` (default): float32 (frames, classes) log-softmax of the logits, so a temperature can be
  applied later (softmax(log_softmax(z) / T) == softmax(z / T));
- ``logits``: the raw float32 logits;
- with ``topk`` K > 0: Kaldi's Posterior format, per frame the K most probable class ids with their
  probabilities renormalised over the K kept (so each frame sums to 1), which Kaldi nnet1 trains on.

Each job also writes ``<ark stem>.info.yaml`` beside its archive (what it wrote, and from what).
:func:`finish_posteriors` checks that all jobs agree, reads every job's archive back (every utterance of the
data dir exactly once, its frame count the teacher's output length for its features, its class count, the
job's own utterance and frame counts), merges ``post.JOB.scp`` into ``post.scp`` and writes ``post_info.yaml``,
the sidecar :class:`asrkt.transfer.soft_targets.PosteriorInfo` reads, with a checksum of the whole dump
(:func:`posterior_checksum`) that :func:`verify_posteriors` checks later on demand.

The checksum does not depend on the number of jobs or the archive layout: it is the sha1 over the utterances in
C (byte) order of ``utt id (UTF-8) + b"\\n" + the 20-byte sha1 of its posteriors`` in a canonical form
(:func:`utterance_digest`: dense, the dimensions as little-endian int64 then the float32 values row by row;
Kaldi Posterior, the frame count as int64, each frame's pair count as int32, then every (class id int32, weight
float32) pair in order, all little-endian).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from asrkt.data.kaldi_dir import read_table
from asrkt.decode.batches import check_model_input, inference_loader, load_checkpoint
from asrkt.transfer.layout import POST_INFO, POST_SCP, TOPK_KIND  # noqa: F401 (also re-exported)
from asrkt.utils.progress import Progress
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.config import load_yaml
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.hashing import file_sha1

logger = logging.getLogger(__name__)

CHECKSUM_METHOD = "sha1 over C-sorted (utt, sha1 of its posteriors); asrkt.transfer.dump.posterior_checksum"

OUTPUTS = ("log_probs", "logits")
# Keys every job of one dump must agree on.
JOB_CONSISTENT_KEYS = ("kind", "num_classes", "topk", "frame_shift_ms", "subsampling", "feature_config_hash",
                       "teacher_checkpoint_sha1", "temperature")


@dataclasses.dataclass
class DumpStats:
    utts: int = 0
    frames: int = 0  # output (posterior) frames
    input_frames: int = 0
    seconds: float = 0.0
    bytes: int = 0  # archive size, when the archive is a file

    @property
    def frames_per_s(self) -> float:
        return self.input_frames / self.seconds if self.seconds > 0 else float("nan")


def teacher_outputs(model, feats: torch.Tensor, lengths: torch.Tensor, output: str = "log_probs",
                    topk: int = 0):
    """The dumped quantity for one batch: ``(values, indices or None, out_lengths)``.

    Dense: values (B, T', C) float32 log-probabilities or logits. Top-k: values (B, T', k) probabilities
    renormalised over the k kept, indices (B, T', k) class ids. Run under ``torch.inference_mode``.
    """
    logits, out_lengths = model(feats, lengths)
    logits = logits.float()
    if topk:
        # The kernel dispatcher: a fused log-softmax + top-k on the GPU, the PyTorch reference on the CPU.
        # Softmax over the kept log-probabilities renormalises them.
        from asrkt import kernels

        b, t, c = logits.shape
        indices, log_p = kernels.topk_log_probs(logits.reshape(b * t, c), topk)
        return F.softmax(log_p, dim=-1).reshape(b, t, -1), indices.reshape(b, t, -1), out_lengths
    if output == "log_probs":
        return F.log_softmax(logits, dim=-1), None, out_lengths
    if output == "logits":
        return logits, None, out_lengths
    raise AsrktError(f"unknown output '{output}' (known: {', '.join(OUTPUTS)})")


def job_info_path(ark_path) -> Path:
    """``post.3.ark`` -> ``post.3.info.yaml`` (the per-job sidecar)."""
    ark_path = Path(ark_path)
    stem = ark_path.name[:-4] if ark_path.name.endswith(".ark") else ark_path.name
    return ark_path.with_name(stem + ".info.yaml")


def feature_info(data_dir) -> dict:
    from asrkt.features.info import read_feats_info

    return read_feats_info(data_dir)


def dump_posteriors(model_path, data_dir, wspecifier: str, output: str = "log_probs", topk: int = 0,
                    batch_frames: int = 20000, device: str = "auto", in_memory: bool = False) -> DumpStats:
    """One dump job: run the teacher ``model_path`` over ``data_dir`` and write ``wspecifier``."""
    from asrkt.utils.device import resolve_device
    from asrkt.io import MatrixWriter, PosteriorWriter, parse_wspecifier

    if output not in OUTPUTS:
        raise AsrktError(f"--output must be one of {', '.join(OUTPUTS)}, got '{output}'")
    if topk < 0:
        raise AsrktError(f"--topk must be >= 0 (0: dense), got {topk}")
    model_path = Path(model_path)
    if not model_path.exists():
        raise fail("teacher checkpoint not found (train the teacher first)", model_path)
    spec = parse_wspecifier(wspecifier)
    dev = resolve_device(device)
    model, _ = load_checkpoint(model_path, "teacher", device=dev)
    if topk > model.num_classes:
        raise AsrktError(f"--topk {topk} exceeds the teacher's {model.num_classes} classes ({model_path})")
    feats_info = feature_info(data_dir)
    dataset, loader = inference_loader(data_dir, batch_frames, in_memory=in_memory, pin_memory=dev.type == "cuda")
    check_model_input(model, dataset, model_path)
    sha1 = file_sha1(model_path)
    kind = TOPK_KIND if topk else output
    logger.info("dumping %s of %s (%d classes, subsampling %d) for %d utterances of %s -> %s on %s", kind,
                model_path, model.num_classes, model.subsampling, len(dataset), data_dir, wspecifier, dev)

    stats = DumpStats()
    progress = Progress(len(dataset), desc="dumped")
    start = time.perf_counter()
    writer = PosteriorWriter(wspecifier) if topk else MatrixWriter(wspecifier)
    with writer, torch.inference_mode():
        for batch in loader:
            lengths = batch.lengths
            values, indices, out_lengths = teacher_outputs(model, batch.feats.to(dev, non_blocking=True),
                                                           lengths.to(dev), output, topk)
            values = values.cpu().numpy()
            indices = indices.cpu().numpy() if indices is not None else None
            out_lengths = out_lengths.cpu().tolist()
            for b, utt in enumerate(batch.utts):
                n = out_lengths[b]
                if topk:
                    writer.write_topk(utt, indices[b, :n], values[b, :n])
                else:
                    writer.write(utt, values[b, :n])
                stats.frames += n
            stats.utts += len(batch.utts)
            stats.input_frames += int(lengths.sum())
            progress.update(len(batch.utts), int(lengths.sum()))
    stats.seconds = time.perf_counter() - start
    progress.close()
    if spec.ark_is_file:
        stats.bytes = Path(spec.ark).stat().st_size
        info = {
            "kind": kind, "num_classes": model.num_classes, "topk": topk,
            "frame_shift_ms": float(feats_info["frame_shift_ms"]) * model.subsampling,
            "subsampling": model.subsampling, "feature_config_hash": feats_info["config_hash"],
            "teacher_checkpoint": str(model_path), "teacher_checkpoint_sha1": sha1, "temperature": 1.0,
            "data_dir": str(data_dir), "num_utts": stats.utts, "num_frames": stats.frames, "bytes": stats.bytes,
            "seconds": round(stats.seconds, 3),
        }
        atomic_write_text(job_info_path(spec.ark), yaml.safe_dump(info, sort_keys=False))
    logger.info("dumped %d utterances, %d frames (%.0f input frames/s), %d bytes (%.1f bytes/frame)", stats.utts,
                stats.frames, stats.frames_per_s, stats.bytes, stats.bytes / max(stats.frames, 1))
    return stats


def utterance_digest(value) -> bytes:
    """The 20-byte sha1 of one utterance's posteriors in a canonical form (all little-endian): a dense matrix as
    its dimensions (int64) and its float32 values row by row; a Kaldi Posterior (list of frames of (class id,
    weight) pairs) as its frame count (int64), each frame's pair count (int32), then every pair (int32, float32)."""
    h = hashlib.sha1()
    if isinstance(value, np.ndarray):
        h.update(np.asarray(value.shape, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(value, dtype="<f4").tobytes())
    else:
        pair = np.dtype([("id", "<i4"), ("weight", "<f4")])
        h.update(np.asarray(len(value), dtype="<i8").tobytes())
        h.update(np.fromiter((len(f) for f in value), dtype="<i4", count=len(value)).tobytes())
        h.update(np.array([(int(i), w) for f in value for i, w in f], dtype=pair).tobytes())
    return h.digest()


def posterior_checksum(digests: dict[str, bytes]) -> str:
    """The checksum of a whole dump from its utterances' :func:`utterance_digest`: sha1 over the utterances in
    C (byte) order of utt id (UTF-8) + newline + digest, so it does not depend on the jobs or the archives."""
    h = hashlib.sha1()
    for utt in sorted(digests, key=lambda u: u.encode("utf-8")):
        h.update(utt.encode("utf-8") + b"\n" + digests[utt])
    return h.hexdigest()


def expected_input_frames(data_dir) -> dict[str, int]:
    """utt -> feature frames of ``data_dir``: ``utt2num_frames`` (stage 1 writes it), else the matrices' shapes."""
    data_dir = Path(data_dir)
    feats = read_table(data_dir / "feats.scp", check_sorted=False)
    table = read_table(data_dir / "utt2num_frames", check_sorted=False) \
        if (data_dir / "utt2num_frames").is_file() else {}
    if all(u in table for u in feats):
        return {u: int(table[u]) for u in feats}
    from asrkt.io import load_scp

    scp = load_scp(data_dir / "feats.scp")
    return {u: int(np.asarray(scp[u]).shape[0]) for u in feats}


def _read_table_items(scp: Path, sparse: bool):
    from asrkt.io import read_matrices, read_posteriors

    return read_posteriors(f"scp:{scp}") if sparse else read_matrices(f"scp:{scp}")


def scan_posteriors(scp, info: dict, input_frames: dict[str, int] | None = None) -> tuple[dict[str, bytes], int]:
    """Read every utterance of ``scp`` and check it against ``info`` (kind, num_classes, topk, subsampling) and,
    with ``input_frames``, against its features: the frame count must be the teacher's output length for them
    (frames / subsampling, floor or ceil). Returns ({utt: digest}, frames); AsrktError on the first problem,
    naming ``scp`` and the utterance."""
    from asrkt.transfer.soft_targets import frames_match

    scp = Path(scp)
    sparse, num_classes = info["kind"] == TOPK_KIND, int(info["num_classes"])
    sub, topk = int(info["subsampling"]), int(info.get("topk") or 0)
    digests, frames = {}, 0
    for utt, value in _read_table_items(scp, sparse):
        if sparse:
            n = len(value)
            widest = max((len(f) for f in value), default=0)
            top_id = max((int(i) for f in value for i, _ in f), default=-1)
            if widest > topk or top_id >= num_classes:
                raise fail(f"a frame has {widest} pairs or class id {top_id}: expected at most {topk} pairs with ids "
                           f"below {num_classes}", scp, utt)
        else:
            if value.ndim != 2 or value.shape[1] != num_classes:
                raise fail(f"expected a (frames, {num_classes}) matrix, got shape {value.shape}", scp, utt)
            if np.isnan(value).any():
                raise fail(f"posteriors contain NaN (first in frame {int(np.isnan(value).any(axis=1).argmax())})",
                           scp, utt)
            n = int(value.shape[0])
        if input_frames is not None:
            if utt not in input_frames:
                raise fail("posteriors of an utterance that has no features in the data dir (a job ran on the "
                           "wrong data?)", scp, utt)
            feat = input_frames[utt]
            if not frames_match(n, feat, sub):
                want = " or ".join(map(str, sorted({feat // sub, -(-feat // sub)})))
                raise fail(f"{n} frames, but the teacher's output for its {feat} feature frames has {want} "
                           f"(subsampling {sub}): the features changed after the dump? rerun stage 4", scp, utt)
        digests[utt] = utterance_digest(value)
        frames += n
    return digests, frames


def finish_posteriors(post_dir, nj: int, data_dir=None, model_path=None) -> dict:
    """Merge the ``nj`` job scripts of ``post_dir`` into ``post.scp`` and write ``post_info.yaml``.

    Checks: every job finished (its scp and info exist), all jobs agree on what they dumped, every job's archive
    reads back with the utterance and frame counts it reported, the class count and (top-k) pair count of the
    dump, and no utterance twice; with ``model_path``, the teacher checkpoint is still the one dumped; with
    ``data_dir``, its features are the ones the teacher saw, every utterance with features has posteriors, none
    other has, and each has the teacher's output length for its features. Writes the dump's checksum
    (:func:`posterior_checksum`). Returns the info written.
    """
    from asrkt.io import merge_scp

    post_dir = Path(post_dir)
    if nj < 1:
        raise AsrktError(f"number of jobs must be >= 1, got {nj}")
    if not post_dir.is_dir():
        raise fail("posterior directory not found", post_dir)
    scps, infos = [], []
    for j in range(1, nj + 1):
        scp = post_dir / f"post.{j}.scp"
        info_path = job_info_path(post_dir / f"post.{j}.ark")
        if not scp.is_file() or not info_path.is_file():
            missing = scp if not scp.is_file() else info_path
            raise fail(f"missing: dump job {j} of {nj} did not finish (see {post_dir}/log/dump.{j}.log)", missing)
        scps.append(scp)
        infos.append((info_path, load_yaml(info_path)))
    first_path, first = infos[0]
    for path, info in infos[1:]:
        for key in JOB_CONSISTENT_KEYS:
            if info.get(key) != first.get(key):
                raise fail(f"jobs disagree on {key}: {info.get(key)!r} here, {first.get(key)!r} in {first_path} "
                           "(mixed dumps? rerun stage 4 with --overwrite true)", path)
    if model_path is not None:
        model_path = Path(model_path)
        if not model_path.exists():
            raise fail("teacher checkpoint not found", model_path)
        if file_sha1(model_path) != first["teacher_checkpoint_sha1"]:
            raise fail(f"the teacher checkpoint changed since the posteriors were dumped from "
                       f"{first.get('teacher_checkpoint')}; dump them again", model_path)
    merged = post_dir / POST_SCP
    have: dict[str, Path] = {}
    for scp in scps:
        for utt in read_table(scp, check_sorted=False):
            if utt in have:
                raise fail(f"also in {have[utt]}: the split overlapped or a job ran on the wrong data", scp, utt)
            have[utt] = scp
    total_utts = sum(int(i["num_utts"]) for _, i in infos)
    if len(have) != total_utts:
        raise fail(f"{len(have)} distinct utterances in the job scripts but the jobs report {total_utts}",
                   post_dir)
    input_frames = None
    if data_dir is not None:  # checked before anything is written
        feats = feature_info(data_dir)
        if feats["config_hash"] != first["feature_config_hash"]:
            raise fail(f"features of {data_dir} (config {feats['config_hash']}) are not the ones the teacher "
                       f"saw (config {first['feature_config_hash']})", post_dir)
        feats_scp = Path(data_dir) / "feats.scp"
        input_frames = expected_input_frames(data_dir)
        missing = [u for u in input_frames if u not in have]
        if missing:
            raise fail(f"{len(missing)} utterances of {feats_scp} have no posteriors (first: '{missing[0]}'); "
                       "was the split made from another data dir?", post_dir, utt=missing[0])
    # Every archive read back: what the jobs say they wrote is what is there, and what the teacher must give.
    digests: dict[str, bytes] = {}
    for j, (scp, (info_path, info)) in enumerate(zip(scps, infos), 1):
        job_digests, job_frames = scan_posteriors(scp, first, input_frames)
        if len(job_digests) != int(info["num_utts"]) or job_frames != int(info["num_frames"]):
            raise fail(f"dump job {j} reported {info['num_utts']} utterances and {info['num_frames']} frames but its "
                       f"archive holds {len(job_digests)} and {job_frames} (rerun stage 4 with --overwrite true)", scp)
        digests.update(job_digests)
    (post_dir / POST_INFO).unlink(missing_ok=True)  # the dir is incomplete until the sidecar is back
    merge_scp(scps, merged)
    frames = sum(int(i["num_frames"]) for _, i in infos)
    nbytes = sum(int(i["bytes"]) for _, i in infos)
    info = {key: first[key] for key in JOB_CONSISTENT_KEYS}
    info.update({
        "teacher_checkpoint": first.get("teacher_checkpoint"),
        "num_utts": total_utts, "num_frames": frames, "bytes": nbytes,
        "bytes_per_frame": round(nbytes / frames, 2) if frames else None,
        "checksum": posterior_checksum(digests), "checksum_method": CHECKSUM_METHOD,
        "nj": nj, "seconds": round(sum(float(i.get("seconds", 0)) for _, i in infos), 3),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    })
    atomic_write_text(post_dir / POST_INFO, yaml.safe_dump(info, sort_keys=False))
    logger.info("%s: %d utterances, %d frames, %.1f MB (%s) from %d jobs, checksum %s", merged, total_utts, frames,
                nbytes / 1e6, info["kind"], nj, info["checksum"])
    return info


def verify_posteriors(post_dir, data_dir=None) -> dict:
    """Read a finished posterior dir back through its ``post.scp`` and compare with ``post_info.yaml``: the
    checksum, the utterance and frame counts (and, with ``data_dir``, the coverage and the frame counts against
    its features, as :func:`finish_posteriors`). AsrktError on a mismatch; returns the info."""
    post_dir = Path(post_dir)
    info_path, scp = post_dir / POST_INFO, post_dir / POST_SCP
    if not info_path.is_file() or not scp.is_file():
        raise fail("missing: the posterior dump did not finish (rerun stage 4)", info_path if not
                   info_path.is_file() else scp)
    info = load_yaml(info_path)
    if not info.get("checksum"):
        raise fail("has no checksum (written by an older asrkt, or not by asrkt.bin.finish_posteriors): nothing "
                   "to verify against; rerun asrkt.bin.finish_posteriors on the folder", info_path)
    input_frames = expected_input_frames(data_dir) if data_dir is not None else None
    digests, frames = scan_posteriors(scp, info, input_frames)
    if input_frames is not None:
        missing = [u for u in input_frames if u not in digests]
        if missing:
            raise fail(f"{len(missing)} utterances of {data_dir}/feats.scp have no posteriors (first: "
                       f"'{missing[0]}')", scp, utt=missing[0])
    if len(digests) != int(info["num_utts"]) or frames != int(info["num_frames"]):
        raise fail(f"holds {len(digests)} utterances and {frames} frames but {info_path} says {info['num_utts']} and "
                   f"{info['num_frames']}: the dir changed after it was finished; rerun stage 4 with --overwrite true",
                   scp)
    checksum = posterior_checksum(digests)
    if checksum != info["checksum"]:
        raise fail(f"checksum {checksum} of the posteriors differs from {info['checksum']} in {info_path}: an archive "
                   "changed after the dump; rerun stage 4 with --overwrite true", scp)
    logger.info("%s: %d utterances, %d frames, checksum %s verified", post_dir, len(digests), frames, checksum)
    return info


def bytes_per_frame(num_classes: int, topk: int = 0) -> float:
    """Approximate archive bytes per frame (large utterances): dense float32, or Kaldi binary Posterior
    (per frame a 5-byte count, per pair 10 bytes: int32 and float32 each with a size byte)."""
    return 5 + 10 * topk if topk else 4 * num_classes

