"""Finish the feature stage of a data dir: merge per-job scps, frame counts, CMVN stats, record, validate.

    python -m asrkt.bin.finish_features [--config conf/fbank.yaml] [--key value ...] --nj N [--name NAME] \\
        <data-dir> <fbank-dir>

Reads ``<fbank-dir>/raw_fbank_<name>.{1..N}.scp`` (written by compute_fbank jobs; ``<name>`` defaults to
the data dir's basename) and writes, each atomically:

- ``<fbank-dir>/cmvn_<name>.ark`` and ``<data-dir>/cmvn.scp``: per-speaker Kaldi CMVN stats;
- ``<data-dir>/feats.scp`` (absolute ark paths, so the data dir can be moved or copied) and
  ``<data-dir>/utt2num_frames``;
- ``<data-dir>/feats_info.yaml`` last: kind, dim, frame shift, the full fbank config and its hash.

Every utterance of the data dir must have features of the configured dimension: a missing, extra,
duplicated or malformed one is an error (a failed job aborts the stage; nothing is silently dropped).
Then the data dir is validated (asrkt.data.validate).
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
from pathlib import Path

import numpy as np

from asrkt.data.kaldi_dir import DataDir, c_sorted, read_table, write_table
from asrkt.features.cmvn import SpeakerStats
from asrkt.features.fbank import FbankConfig, check_config
from asrkt.features.info import FEATS_INFO, make_feats_info, write_feats_info
from asrkt.utils.cli import main_wrapper
from asrkt.utils.config import add_config_arguments, config_from_args
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.logging import setup_logging

logger = logging.getLogger(__name__)

_SCP_VALUE = re.compile(r"^(?P<path>.+):(?P<offset>\d+(\[[^\]]*\])?)$")


def absolute_scp_value(value: str, scp_path, utt: str) -> str:
    """``ark/path:offset`` with the ark path made absolute (relative paths are relative to the cwd, as Kaldi)."""
    m = _SCP_VALUE.match(value)
    if not m:
        raise fail(f"expected '<ark-path>:<offset>', got '{value}'", scp_path, utt)
    return f"{os.path.abspath(m.group('path'))}:{m.group('offset')}"


def merge_job_scps(job_scps: list[Path]) -> dict[str, str]:
    """Union of the per-job scps (absolute paths); a missing scp or an utterance in two jobs is an error."""
    merged: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for scp in job_scps:
        if not scp.is_file():
            raise fail("missing: its compute_fbank job did not finish (see the job's log)", scp)
        for utt, value in read_table(scp, check_sorted=False).items():
            if utt in merged:
                raise fail(f"utterance also in {origin[utt]}", scp, utt)
            merged[utt] = absolute_scp_value(value, scp, utt)
            origin[utt] = scp
    return merged


def finish_features(data_dir, fbank_dir, nj: int, cfg: FbankConfig, name: str | None = None,
                    validate: bool = True) -> dict:
    """Do the work described in the module docstring; returns the feats_info record."""
    from asrkt.io import MatrixWriter, read_matrices

    data_dir, fbank_dir = Path(data_dir), Path(fbank_dir).absolute()
    name = name or data_dir.absolute().name
    data = DataDir.load(data_dir)
    utts = data.utts
    job_scps = [fbank_dir / f"raw_fbank_{name}.{n}.scp" for n in range(1, nj + 1)]
    feats_scp = merge_job_scps(job_scps)

    missing = [u for u in utts if u not in feats_scp]
    extra = [u for u in c_sorted(feats_scp) if u not in data.utt2spk]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {len(utts)} utterances have no features (first: {missing[0]})")
        if extra:
            problems.append(f"{len(extra)} utterances with features are not in utt2spk (first: {extra[0]}); "
                            "was the data dir changed after splitting?")
        raise AsrktError(f"{fbank_dir}/raw_fbank_{name}.*.scp vs {data_dir}/utt2spk: " + "; ".join(problems))

    # Invalidate the old record first: a crash below must not leave a dir that looks finished.
    (data_dir / FEATS_INFO).unlink(missing_ok=True)

    utt2spk_path = data_dir / "utt2spk"
    speakers = SpeakerStats(data.utt2spk, source=utt2spk_path)
    num_frames: dict[str, int] = {}
    for job_scp in job_scps:
        for utt, feats in read_matrices(f"scp:{job_scp}"):
            if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] != cfg.dim:
                raise fail(f"features of shape {feats.shape}, expected (frames > 0, {cfg.dim}) from the fbank "
                           "config; were they computed with another config?", job_scp, utt)
            if not np.all(np.isfinite(feats)):
                raise fail("features contain NaN or infinite values", job_scp, utt)
            num_frames[utt] = feats.shape[0]
            speakers.add(utt, feats)

    with MatrixWriter(f"ark,scp:{fbank_dir}/cmvn_{name}.ark,{data_dir}/cmvn.scp") as writer:
        for spk in c_sorted(speakers.stats):
            writer.write(spk, speakers.stats[spk])
    write_table(data_dir / "feats.scp", feats_scp)
    write_table(data_dir / "utt2num_frames", {u: str(n) for u, n in num_frames.items()})
    info = make_feats_info(cfg, num_utts=len(num_frames), num_frames=sum(num_frames.values()))
    write_feats_info(data_dir, info)
    logger.info("%s: %d utterances, %d frames (%.2f h), dim %d, %d speakers with CMVN stats", data_dir,
                info["num_utts"], info["num_frames"], info["num_frames"] * cfg.frame_shift_ms / 3.6e6, cfg.dim,
                len(speakers.stats))

    if validate:
        # helper DATA's validator; optional only while the package is being assembled
        if importlib.util.find_spec("asrkt.data.validate") is None:
            logger.warning("asrkt.data.validate not available: %s not validated", data_dir)
        else:
            from asrkt.data.validate import validate_data_dir

            validate_data_dir(data_dir, no_text=not (data_dir / "text").is_file())
            logger.info("%s validated", data_dir)
    return info


@main_wrapper
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt key must not pass as a prefix
    parser.add_argument("data_dir")
    parser.add_argument("fbank_dir", help="folder of the raw_fbank_<name>.JOB.{ark,scp} files")
    parser.add_argument("--nj", type=int, required=True, help="number of compute_fbank jobs that were run")
    parser.add_argument("--name", default=None, help="<name> in raw_fbank_<name>.JOB.scp (default: basename "
                                                     "of the data dir)")
    parser.add_argument("--no-validate", dest="validate", action="store_false",
                        help="skip validate_data_dir at the end")
    parser.add_argument("--log-level", default="INFO")
    add_config_arguments(parser, FbankConfig)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if args.nj < 1:
        raise AsrktError(f"--nj must be >= 1, got {args.nj}")
    cfg = config_from_args(args, FbankConfig)
    check_config(cfg, source=args.config or "fbank config")
    finish_features(args.data_dir, args.fbank_dir, args.nj, cfg, name=args.name, validate=args.validate)


if __name__ == "__main__":
    main()
