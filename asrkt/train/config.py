"""The train config: what one ``asrkt.bin.train`` run computes (every key is also a ``--key value`` option)."""
from __future__ import annotations

import dataclasses

from asrkt.models import ModelConfig
from asrkt.train.schedule import ScheduleConfig
from asrkt.utils.errors import AsrktError

OPTIMIZERS = ("adam", "sgd")
# Keys that do not change what is computed, so a resumed run may differ in them.
RESUME_IGNORED_KEYS = ("num_threads", "log_interval_s", "keep_checkpoints", "device")


@dataclasses.dataclass
class LossConfig:
    # The loss terms and their weights, e.g. [{name: kd, weight: 0.5, temperature: 2}, {name: ctc, weight: 0.5}]
    # (asrkt.train.terms). Empty: the shorthand below.
    terms: list[dict] = dataclasses.field(default_factory=list)
    kd_alpha: float = 0.0  # shorthand: (1 - kd_alpha) x the objective's loss + kd_alpha x kd; 1 = soft targets only
    temperature: float = 1.0  # default T of kd terms (the KL is scaled by T^2)
    kd_backend: str = "auto"  # default backend of kd terms: auto (triton on CUDA, else reference) | reference | triton
    frame_tolerance: int = 0  # allowed |teacher frames - feature frames / subsampling| (beyond floor/ceil)
    # On-the-fly teacher checkpoint when --teacher-model is not given (terms on teacher_forward, e.g. pkt); a
    # recipe config's path (exp/teacher/final.pt) is relative to where training runs. Not the top-level key
    # teacher_model: its option --teacher-model would clash with the command-line one.
    teacher_model: str = ""


@dataclasses.dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3  # initial learning rate (the schedule halves it)
    weight_decay: float = 0.0
    grad_clip: float = 5.0  # max global gradient norm; 0 = no clipping
    momentum: float = 0.9  # sgd only


@dataclasses.dataclass
class BatchConfig:
    max_frames: int = 20000  # padded input frames per batch (batch size x longest utterance)
    max_utts: int = 0  # utterances per batch, 0 = no limit
    shuffle: bool = True  # shuffle the batch order every epoch (seeded from seed and epoch)
    length_jitter: float = 0.1  # relative length noise before sorting, so batches differ between epochs


@dataclasses.dataclass
class InitConfig:
    # How --init-from initialises the model (asrkt.train.init): copy = copy parameters by name
    method: str = "copy"
    # ESPnet-style "src_prefix:dst_prefix:exclude1,exclude2" mappings; empty: every parameter, same names
    param: list[str] = dataclasses.field(default_factory=list)
    strict: bool = True  # every parameter of the model (no mapping) / every mapped one must be initialised
    # Model checkpoint to initialise from when --init-from is not given (a recipe config's path, e.g.
    # exp/teacher/final.pt, relative to where training runs); empty: no initialisation
    from_model: str = ""
    # Options of the method (checked against its Options dataclass), e.g. for dbn {gauss_epochs: 4, seed: 1}
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainConfig:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    objective: str = "ctc"  # asrkt.targets: ctc | frame_ce (what the targets dir holds)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    batch: BatchConfig = dataclasses.field(default_factory=BatchConfig)
    init: InitConfig = dataclasses.field(default_factory=InitConfig)
    # Epoch hooks (asrkt.train.hooks), e.g. [{name: grow_depth, at_epochs: [3]}]; run in this order
    hooks: list[dict] = dataclasses.field(default_factory=list)
    seed: int = 1
    num_threads: int = 2  # torch CPU threads
    device: str = "auto"  # auto: cuda when available, else cpu
    keep_in_memory: bool = True  # load and CMVN-normalise all features once
    cmvn_norm_vars: bool = False
    max_bad_batch_fraction: float = 0.1  # more skipped (NaN/inf) batches than this in an epoch is an error
    log_interval_s: float = 30.0  # seconds between progress lines
    keep_checkpoints: int = 2  # training checkpoints and per-epoch model files kept (newest; the best is kept too)


def loss_term_specs(loss: LossConfig, hard_term: str) -> list[dict]:
    """The term specs of ``loss``: ``loss.terms``, or the kd_alpha shorthand over the objective's ``hard_term``."""
    if loss.terms:
        if loss.kd_alpha != 0.0:
            raise AsrktError("loss: give either loss.terms or loss.kd_alpha, not both")
        return [dict(t) for t in loss.terms]
    a = loss.kd_alpha
    if not 0.0 <= a <= 1.0:
        raise AsrktError(f"loss.kd_alpha must lie in [0, 1], got {a}")
    specs = []
    if a < 1.0:
        specs.append({"name": hard_term, "weight": 1.0 - a})
    if a > 0.0:
        specs.append({"name": "kd", "weight": a})
    return specs


def check_train_config(cfg: TrainConfig) -> None:
    problems = []
    if not cfg.loss.temperature > 0:
        problems.append(f"loss.temperature must be > 0, got {cfg.loss.temperature}")
    if cfg.loss.frame_tolerance < 0:
        problems.append(f"loss.frame_tolerance must be >= 0, got {cfg.loss.frame_tolerance}")
    if cfg.optim.optimizer not in OPTIMIZERS:
        problems.append(f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got '{cfg.optim.optimizer}'")
    if not cfg.optim.lr > 0:
        problems.append(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.optim.grad_clip < 0 or cfg.optim.weight_decay < 0:
        problems.append("optim.grad_clip and optim.weight_decay must be >= 0")
    if cfg.num_threads < 1:
        problems.append(f"num_threads must be >= 1, got {cfg.num_threads}")
    if cfg.keep_checkpoints < 0:
        problems.append(f"keep_checkpoints must be >= 0, got {cfg.keep_checkpoints}")
    if not 0.0 <= cfg.max_bad_batch_fraction < 1.0:
        problems.append(f"max_bad_batch_fraction must lie in [0, 1), got {cfg.max_bad_batch_fraction}")
    if problems:
        raise AsrktError("train config: " + "; ".join(problems))
