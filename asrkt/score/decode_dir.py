"""The scored decode folder (``exp/<system>/decode_<set>/``): hyp.txt scored against the data dir's text.

Written by :func:`asrkt.decode.run.decode_data_dir` for a single decoding job, and by :func:`merge_decode_jobs`
after ``$decode_cmd JOB=1:N`` decoded the N parts of a split data dir (``python -m asrkt.bin.score
--decode-dir``). ``score.yaml`` is written last, so that its presence means the folder is complete.
"""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from asrkt.data.kaldi_dir import read_table, write_table
from asrkt.score.wer import compute_wer, kaldi_line, per_utt_lines, summary_lines
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.config import load_yaml
from asrkt.utils.errors import fail

logger = logging.getLogger(__name__)


def write_scored(out_dir, data_dir, hyps: dict[str, str], score: dict, do_score: bool = True) -> dict:
    """Write ``hyps`` to ``out_dir/hyp.txt`` and, when ``data_dir/text`` exists (and ``do_score``), ref.txt,
    per_utt.txt, wer.txt and the scores into ``score``; then ``score.yaml``. Returns ``score``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "score.yaml").unlink(missing_ok=True)  # the folder is incomplete until score.yaml is back
    write_table(out_dir / "hyp.txt", hyps)
    text_path = Path(data_dir) / "text"
    if do_score and text_path.is_file():
        refs = read_table(text_path)
        write_table(out_dir / "ref.txt", refs)
        result = compute_wer(refs, hyps)
        atomic_write_text(out_dir / "per_utt.txt", "\n".join(per_utt_lines(result)) + "\n")
        lines = summary_lines(result, str(out_dir))
        atomic_write_text(out_dir / "wer.txt", "\n".join(lines) + "\n")
        score.update(result.to_dict())
        score["kaldi_line"] = kaldi_line(result, str(out_dir))
        if result.missing:
            score["missing_utts"] = result.missing[:20]
        logger.info("%s", lines[0])
        logger.info("%s", lines[2])
    elif do_score:
        logger.warning("%s: no transcripts, writing hypotheses only (no scores)", text_path)
    atomic_write_text(out_dir / "score.yaml", yaml.safe_dump(score, sort_keys=False, allow_unicode=True))
    return score


def merge_decode_jobs(decode_dir, data_dir, nj: int) -> dict:
    """Merge the hypotheses of ``decode_dir/split<nj>/<job>/`` (jobs 1..nj, each from
    ``asrkt.bin.decode --no-score``) into ``decode_dir`` and score them against ``data_dir/text``."""
    decode_dir = Path(decode_dir)
    hyps: dict[str, str] = {}
    jobs = []
    for job in range(1, nj + 1):
        job_dir = decode_dir / f"split{nj}" / str(job)
        if not (job_dir / "score.yaml").is_file():
            raise fail(f"decoding job {job} of {nj} is missing or incomplete (no score.yaml): rerun the decoding",
                       job_dir)
        jobs.append(load_yaml(job_dir / "score.yaml"))
        part = read_table(job_dir / "hyp.txt", check_sorted=False) if (job_dir / "hyp.txt").is_file() else {}
        twice = set(part) & set(hyps)
        if twice:
            raise fail(f"utterances decoded by two jobs, e.g. {sorted(twice)[0]}", job_dir / "hyp.txt")
        hyps.update(part)
    decode_time = sum(float(j.get("decode_time_s") or 0) for j in jobs)
    audio_s = sum(float(j.get("audio_s") or 0) for j in jobs)
    first = jobs[0]
    score = {k: first[k] for k in ("model", "model_sha1", "lang_dir", "decoder") if k in first}
    score.update({"data_dir": str(data_dir), "jobs": nj, "utts": len(hyps), "decode_time_s": round(decode_time, 3),
                  "audio_s": round(audio_s, 3), "rtf": round(decode_time / audio_s, 5) if audio_s > 0 else None,
                  "date": max(str(j.get("date", "")) for j in jobs)})
    models = {j.get("model_sha1") for j in jobs}
    if len(models) > 1:
        raise fail(f"the {nj} decoding jobs used different models ({', '.join(sorted(map(str, models)))})",
                   decode_dir)
    return write_scored(decode_dir, data_dir, hyps, score)


BEST_SCALE = "best.yaml"
SCALE_PREFIX = "acwt_"  # tune_dir/acwt_<scale>/: one scored decode per acoustic scale


def scale_dir(tune_dir, scale: float) -> Path:
    """The scored decode folder of one acoustic scale inside a tuning folder (read by :func:`pick_best_scale`)."""
    return Path(tune_dir) / f"{SCALE_PREFIX}{scale:g}"


def pick_best_scale(tune_dir) -> dict:
    """The acoustic scale of ``tune_dir/acwt_<s>/`` (decodes of one dev set at several scales) with the lowest WER;
    ties go to the scale nearest the middle of the tried ones (their geometric mean). Written to ``tune_dir/best.yaml`` and returned
    (``acoustic_scale``, ``wer``, and every scale's WER): only the dev set chooses, the test sets then are decoded
    once at this scale."""
    import math

    tune_dir = Path(tune_dir)
    wers = {}
    for score_path in sorted(tune_dir.glob(f"{SCALE_PREFIX}*/score.yaml")):
        score = load_yaml(score_path)
        if "wer" not in score:
            raise fail("no WER in this decode (a dev set without text?): tuning needs transcripts", score_path)
        try:
            scale = float(score_path.parent.name[len(SCALE_PREFIX):])
        except ValueError:
            raise fail("not an acwt_<scale> folder", score_path.parent) from None
        wers[scale] = float(score["wer"])
    if not wers:
        raise fail("no acwt_<scale>/score.yaml: decode the dev set at several acoustic scales first "
                   "(asrkt.bin.decode --acoustic-scales, asrkt.bin.decode_gmm --acoustic-scale)", tune_dir)
    middle = math.exp(sum(math.log(s) for s in wers) / len(wers))
    best = min(wers, key=lambda s: (wers[s], abs(math.log(s / middle))))
    out = {"acoustic_scale": best, "wer": wers[best],
           "dev_wer_by_scale": {f"{s:g}": w for s, w in sorted(wers.items())}}
    if len(wers) > 2 and best in (min(wers), max(wers)):
        out["at_grid_edge"] = True
        logger.warning("%s: the best acoustic scale %g is the %s one tried: the best may lie beyond; widen the "
                       "grid (the recipe's --acoustic-scales)", tune_dir, best,
                       "smallest" if best == min(wers) else "largest")
    atomic_write_text(tune_dir / BEST_SCALE, yaml.safe_dump(out, sort_keys=False))
    logger.info("%s: best acoustic scale %g (dev WER %.2f; %s)", tune_dir, best, wers[best],
                ", ".join(f"{s:g}: {w:.2f}" for s, w in sorted(wers.items())))
    return out
