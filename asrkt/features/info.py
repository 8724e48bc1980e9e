"""The feature record of a data dir: ``data/<set>/feats_info.yaml`` (kind, dim, frame shift, config, hash).

Written last by the feature stage, so its presence means feats.scp, utt2num_frames and cmvn.scp are
complete. Consumers (training, posterior dumps, decoding) read it to learn the input dimension and frame
shift, and to refuse mixing data dirs whose features were computed with different configs.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from asrkt.features.fbank import FbankConfig
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.config import config_hash, to_dict
from asrkt.utils.errors import AsrktError, fail

FEATS_INFO = "feats_info.yaml"


def make_feats_info(cfg: FbankConfig, num_utts: int, num_frames: int) -> dict:
    return {
        "kind": "fbank",
        "dim": cfg.dim,
        "frame_shift_ms": cfg.frame_shift_ms,
        "frame_length_ms": cfg.frame_length_ms,
        "sample_rate": cfg.sample_rate,
        "config_hash": config_hash(cfg),
        "config": to_dict(cfg),
        "cmvn": "per-speaker stats in cmvn.scp (raw, apply at load time)",
        "num_utts": num_utts,
        "num_frames": num_frames,
    }


def write_feats_info(data_dir, info: dict) -> Path:
    path = Path(data_dir) / FEATS_INFO
    atomic_write_text(path, yaml.safe_dump(info, sort_keys=False))
    return path


def read_feats_info(data_dir) -> dict:
    """Read ``feats_info.yaml`` of ``data_dir``; AsrktError naming the file if missing or malformed."""
    path = Path(data_dir) / FEATS_INFO
    if not path.is_file():
        raise fail("missing: features were not computed (or not finished) for this data dir; run the feature "
                   "stage (make_fbank.sh)", path)
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise fail(f"not valid YAML: {e}", path) from None
    missing = [k for k in ("kind", "dim", "frame_shift_ms", "config_hash") if not isinstance(info, dict)
               or k not in info]
    if missing:
        raise fail(f"malformed feature record, missing {', '.join(missing)}", path)
    return info


def check_same_features(*data_dirs) -> dict:
    """Check that all data dirs hold features of the same kind, dim and config; return the first record."""
    infos = [(Path(d), read_feats_info(d)) for d in data_dirs]
    if not infos:
        raise AsrktError("check_same_features: no data dirs given")
    ref_dir, ref = infos[0]
    for d, info in infos[1:]:
        for key in ("kind", "dim", "frame_shift_ms", "config_hash"):
            if info[key] != ref[key]:
                raise AsrktError(f"{d / FEATS_INFO}: features differ from {ref_dir / FEATS_INFO} ({key} "
                                 f"{info[key]!r} vs {ref[key]!r}); recompute them with the same fbank config")
    return ref
