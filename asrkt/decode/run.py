"""Decode a data dir with a trained model and score it: the decode folder of one system on one set.

``<out_dir>/``: ``hyp.txt`` and ``ref.txt`` (Kaldi text, C-sorted), ``per_utt.txt`` (per-utterance
alignments), ``wer.txt`` (Kaldi's ``%WER``, ``%SER``, ``%CER`` and ``Scored`` lines), ``decode_config.yaml``
and, written last so that its presence means the folder is complete, ``score.yaml`` (WER, CER, counts,
utterances, model sha1, decode time, real-time factor).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from pathlib import Path

from asrkt.data.kaldi_dir import read_table
from asrkt.decode.batches import check_model_input, inference_loader, load_checkpoint
from asrkt.decode.search import DecodeConfig, decode_batches
from asrkt.targets import build_objective
from asrkt.utils.device import resolve_device
from asrkt.utils.hashing import file_sha1
from asrkt.utils.progress import Progress
from asrkt.score.decode_dir import scale_dir, write_scored
from asrkt.utils.config import save_config, to_dict
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)


def audio_seconds(data_dir, frame_counts: dict[str, int]) -> float:
    """Audio duration of the decoded utterances: utt2dur when it covers them, else frames x frame shift."""
    from asrkt.features.info import read_feats_info

    data_dir = Path(data_dir)
    if (data_dir / "utt2dur").is_file():
        utt2dur = read_table(data_dir / "utt2dur", check_sorted=False)
        if all(u in utt2dur for u in frame_counts):
            return sum(float(utt2dur[u]) for u in frame_counts)
    shift_ms = float(read_feats_info(data_dir)["frame_shift_ms"])
    return sum(frame_counts.values()) * shift_ms / 1000.0


def decode_data_dir(model_path, data_dir, lang_dir, out_dir, cfg: DecodeConfig | None = None,
                    do_score: bool = True, acoustic_scales=None) -> dict:
    """Decode ``data_dir`` with ``model_path`` into ``out_dir`` (see the module docstring); returns score.yaml's
    contents (without the scores when the data dir has no ``text``, or ``do_score`` is false: one job of a split
    decode, scored after the merge by :func:`asrkt.score.decode_dir.merge_decode_jobs`).

    ``acoustic_scales`` (WFST decoders; tuning on dev): the model runs once, its log-probabilities are searched at
    every scale, each into its own scored folder ``out_dir/acwt_<s>/``; returns ``{scale: score}`` then."""
    cfg = cfg or DecodeConfig()
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    model, meta = load_checkpoint(model_path, "model", device=device)
    objective = build_objective(str(meta.get("objective") or "ctc"), lang_dir)
    if objective.num_classes != model.num_classes:
        raise AsrktError(f"{lang_dir} has {objective.num_classes} classes but the model {model_path} outputs "
                         f"{model.num_classes}: decode with the targets dir the model was trained with")
    dataset, loader = inference_loader(data_dir, cfg.batch_frames, pin_memory=device.type == "cuda")
    check_model_input(model, dataset, model_path)
    audio_s = audio_seconds(data_dir, dataset.frame_counts())
    common = {"model": str(model_path), "model_sha1": file_sha1(model_path), "data_dir": str(data_dir),
              "lang_dir": str(lang_dir)}
    if acoustic_scales:
        return _decode_at_scales(model, loader, objective, device, cfg, [float(s) for s in acoustic_scales],
                                 out_dir, data_dir, common, audio_s)
    decoder = objective.build_decoder(cfg)
    logger.info("decoding %d utterances of %s with %s (%s, %s) on %s", len(dataset), data_dir, model_path,
                cfg.method, objective.describe(), device)
    progress = Progress(len(dataset), desc="decoded")
    start = time.perf_counter()
    hyps = dict(decode_batches(model, loader, decoder, device, progress))
    decode_time = time.perf_counter() - start
    progress.close()
    score = _write(out_dir, data_dir, hyps, cfg, common, decode_time, audio_s, do_score)
    logger.info("decoded %d utterances (%.1f s of audio) in %.1f s, real-time factor %.4f -> %s", len(hyps),
                audio_s, decode_time, score["rtf"] or float("nan"), out_dir)
    return score


def _write(out_dir, data_dir, hyps, cfg, common, decode_time, audio_s, do_score) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "decode_config.yaml")
    score = dict(common, decoder=to_dict(cfg), utts=len(hyps), decode_time_s=round(decode_time, 3),
                 audio_s=round(audio_s, 3), rtf=round(decode_time / audio_s, 5) if audio_s > 0 else None,
                 date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    return write_scored(out_dir, data_dir, hyps, score, do_score=do_score)


class _Replay:
    """A decoder that returns the hypotheses of the same batches searched by several decoders: the model's
    log-probabilities are kept per batch (for a dev set, a few MB) so that each scale does not rerun the model."""

    def __init__(self):
        self.kept = []

    def decode(self, log_probs, lengths):
        self.kept.append((log_probs.cpu(), lengths.cpu()))
        return [""] * log_probs.shape[0]


def _decode_at_scales(model, loader, objective, device, cfg, scales, out_dir, data_dir, common, audio_s) -> dict:
    keep = _Replay()
    start = time.perf_counter()
    utts = [u for u, _ in decode_batches(model, loader, keep, device)]
    forward_time = time.perf_counter() - start
    scores = {}
    for s in scales:
        scfg = dataclasses.replace(cfg, acoustic_scale=s)
        decoder = objective.build_decoder(scfg)
        start = time.perf_counter()
        texts = [t for lp, n in keep.kept for t in decoder.decode(lp, n)]
        search_time = time.perf_counter() - start
        scores[s] = _write(scale_dir(out_dir, s), data_dir, dict(zip(utts, texts)), scfg, common,
                           forward_time + search_time, audio_s, True)
    logger.info("decoded %d utterances at %d acoustic scales (model once, %.1f s) -> %s/acwt_*", len(utts),
                len(scales), forward_time, out_dir)
    return scores
