"""The trainer used by every asrkt system: CTC teacher, KT pre-training, fine-tuning, KT-regularised student.

Loss of record, per frame so that the two terms mix at comparable magnitudes:

    loss = alpha * soft + (1 - alpha) * hard
    hard = CTC summed over utterances / output frames of those utterances
    soft = T^2 * KL(p_T || q_T), averaged over output frames that have teacher targets

``loss.kd_alpha`` 0 trains on the hard targets only (teacher, fine-tuning, from-scratch baseline), 1 on the
teacher's soft targets only (KT pre-training), in between is KT as a regulariser. Epoch losses are
frame-weighted over the whole epoch (sums / frames), so the train and dev numbers are comparable.

Learning rate: Kaldi nnet1's newbob (:mod:`asrkt.train.schedule`) on the dev loss; a rejected epoch restores
the parameters and optimizer state of the last accepted one.

Exp folder: ``config.yaml`` (resolved), ``log/train.log`` (by the caller), ``checkpoints/epoch_<n>.pt`` (model,
optimizer, schedule, RNG states, summary rows: everything to resume), ``checkpoints/epoch_<n>.model.pt``
(model only, :func:`asrkt.models.save_checkpoint`, for accepted epochs), ``final.pt`` (symlink to the model-only
file of the last accepted epoch, i.e. the one the dev loss chose), ``summary.tsv`` and ``train_curves.png``.
Rerunning in a folder with checkpoints resumes from the last one, and refuses if the config changed.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import re
import time
from pathlib import Path

import torch

from asrkt.data.dataset import FrameBatchSampler, UtteranceDataset, make_loader
from asrkt.kernels import kd_loss, kd_loss_sparse
from asrkt.models import ModelConfig, build_model, describe, load_model, save_checkpoint
from asrkt.train.schedule import Newbob, NewbobConfig
from asrkt.train.seed import derive_seed, rng_states, seed_everything, set_rng_states
from asrkt.utils.atomic import atomic_open, atomic_path
from asrkt.utils.config import check_same_config, diff, save_config, to_dict
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.progress import Progress
from asrkt.utils.plotting import new_figure, save_png

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd")
SUMMARY_COLUMNS = ("epoch", "lr", "train_loss", "train_hard", "train_soft", "valid_loss", "valid_hard", "valid_soft",
                   "valid_ter", "frames_per_s", "epoch_time_s", "decision", "bad_batches")
# Keys that do not change what is computed, so a resumed run may differ in them.
RESUME_IGNORED_KEYS = ("num_threads", "log_interval_s", "keep_checkpoints", "device")


@dataclasses.dataclass
class LossConfig:
    kd_alpha: float = 0.0  # 0: hard targets only; 1: soft targets only; between: alpha*soft + (1-alpha)*hard
    temperature: float = 1.0  # T of the soft-target KL (scaled by T^2)
    frame_tolerance: int = 0  # allowed |teacher frames - feature frames / subsampling| (beyond floor/ceil)
    kd_backend: str = "auto"  # asrkt.kernels: auto (triton on CUDA, else reference) | reference | triton


@dataclasses.dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3  # initial learning rate (newbob halves it)
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
class TrainConfig:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    objective: str = "ctc"
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: NewbobConfig = dataclasses.field(default_factory=NewbobConfig)
    batch: BatchConfig = dataclasses.field(default_factory=BatchConfig)
    seed: int = 1
    num_threads: int = 2  # torch CPU threads
    device: str = "auto"  # auto: cuda when available, else cpu
    keep_in_memory: bool = True  # load and CMVN-normalise all features once
    cmvn_norm_vars: bool = False
    max_bad_batch_fraction: float = 0.1  # more skipped (NaN/inf) batches than this in an epoch is an error
    log_interval_s: float = 30.0  # seconds between progress lines
    keep_checkpoints: int = 2  # full training checkpoints kept (the newest ones); 0 = all


def check_train_config(cfg: TrainConfig) -> None:
    problems = []
    if not 0.0 <= cfg.loss.kd_alpha <= 1.0:
        problems.append(f"loss.kd_alpha must lie in [0, 1], got {cfg.loss.kd_alpha}")
    if not cfg.loss.temperature > 0:
        problems.append(f"loss.temperature must be > 0, got {cfg.loss.temperature}")
    if cfg.loss.frame_tolerance < 0:
        problems.append(f"loss.frame_tolerance must be >= 0, got {cfg.loss.frame_tolerance}")
    from asrkt.kernels import BACKENDS

    if cfg.loss.kd_backend not in BACKENDS:
        problems.append(f"loss.kd_backend must be one of {', '.join(BACKENDS)}, got '{cfg.loss.kd_backend}'")
    if cfg.optim.optimizer not in OPTIMIZERS:
        problems.append(f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got '{cfg.optim.optimizer}'")
    if not cfg.optim.lr > 0:
        problems.append(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.optim.grad_clip < 0 or cfg.optim.weight_decay < 0:
        problems.append("optim.grad_clip and optim.weight_decay must be >= 0")
    if cfg.num_threads < 1:
        problems.append(f"num_threads must be >= 1, got {cfg.num_threads}")
    if not 0.0 <= cfg.max_bad_batch_fraction < 1.0:
        problems.append(f"max_bad_batch_fraction must lie in [0, 1), got {cfg.max_bad_batch_fraction}")
    if problems:
        raise AsrktError("train config: " + "; ".join(problems))


def resolve_device(name: str) -> torch.device:
    from asrkt.decode.ctc import resolve_device as _resolve

    return _resolve(name)


# ----------------------------------------------------------------------------------------------- statistics
@dataclasses.dataclass
class LossSums:
    """Frame-weighted loss sums over an epoch (or a dev pass)."""

    hard_sum: float = 0.0
    hard_frames: int = 0
    soft_sum: float = 0.0
    soft_frames: int = 0
    token_errors: int = 0
    ref_tokens: int = 0

    def add(self, hard_sum, hard_frames, soft_sum, soft_frames):
        self.hard_sum += hard_sum
        self.hard_frames += hard_frames
        self.soft_sum += soft_sum
        self.soft_frames += soft_frames

    @property
    def hard(self) -> float:
        return self.hard_sum / self.hard_frames if self.hard_frames else float("nan")

    @property
    def soft(self) -> float:
        return self.soft_sum / self.soft_frames if self.soft_frames else float("nan")

    def total(self, alpha: float) -> float:
        if alpha == 0.0:
            return self.hard
        if alpha == 1.0:
            return self.soft
        return alpha * self.soft + (1.0 - alpha) * self.hard

    @property
    def ter(self) -> float:
        return 100.0 * self.token_errors / self.ref_tokens if self.ref_tokens else float("nan")


def token_errors(hyp: list[int], ref: list[int]) -> int:
    """Levenshtein distance between token sequences (rapidfuzz, which jiwer uses too)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(hyp, ref)


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


# summary.tsv number formats: the lr keeps its significant digits through many halvings
_CELL_FORMATS = {"lr": "{:.6g}", "frames_per_s": "{:.1f}", "epoch_time_s": "{:.2f}"}


def _format_cell(column: str, value) -> str:
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "nan"
    return _CELL_FORMATS.get(column, "{:.4f}").format(value)


class EpochProgress(Progress):
    """Progress of one epoch (tqdm on a terminal, else a log line every ``every_s`` seconds) with the running
    loss (hard and soft terms apart) and the lr appended."""

    def __init__(self, epoch: int, total_batches: int, every_s: float):
        super().__init__(total_batches, unit="batches", desc=f"epoch {epoch}", every_s=every_s, log=logger)
        self.status = ""

    def step(self, frames: int, sums: LossSums, alpha: float, lr: float) -> None:
        self.status = (f"loss {_fmt(sums.total(alpha))} (hard {_fmt(sums.hard)}, soft {_fmt(sums.soft)}), "
                       f"lr {lr:.3g}")
        if self.bar is not None:
            self.bar.set_postfix_str(self.status, refresh=False)
        self.update(1, frames)

    def line(self) -> str:
        return f"{super().line()}; {self.status}" if self.status else super().line()


# ------------------------------------------------------------------------------------------------- trainer
class Trainer:
    """One training run in ``exp_dir``; :meth:`run` trains (or resumes) to the end of the schedule.

    ``lang_dir``: tokenizer for the hard (CTC) targets and the dev token error rate; needed unless
    ``loss.kd_alpha`` is 1. ``train_post``/``valid_post``: dumped teacher posterior dirs; needed when
    ``loss.kd_alpha`` > 0. ``init_from``: a model-only checkpoint whose weights initialise the model
    (fine-tuning); its architecture must be the one ``cfg.model`` builds.
    """

    def __init__(self, cfg: TrainConfig, train_dir, valid_dir, exp_dir, lang_dir=None, train_post=None,
                 valid_post=None, init_from=None):
        check_train_config(cfg)
        self.cfg = cfg
        self.train_dir, self.valid_dir, self.exp_dir = Path(train_dir), Path(valid_dir), Path(exp_dir)
        self.lang_dir = Path(lang_dir) if lang_dir else None
        self.train_post = Path(train_post) if train_post else None
        self.valid_post = Path(valid_post) if valid_post else None
        self.init_from = Path(init_from) if init_from else None
        self.alpha = float(cfg.loss.kd_alpha)
        self.ckpt_dir = self.exp_dir / "checkpoints"
        self.history: list[dict] = []
        self.bad_batches_total = 0
        self._setup_done = False

    # ------------------------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        """Load data, targets and model; check the posteriors. Idempotent."""
        if self._setup_done:
            return
        cfg = self.cfg
        torch.set_num_threads(cfg.num_threads)
        self.device = resolve_device(cfg.device)
        need_hard, need_soft = self.alpha < 1.0, self.alpha > 0.0
        if need_hard and self.lang_dir is None:
            raise AsrktError(f"loss.kd_alpha = {self.alpha} trains on hard targets: give --lang-dir")
        if need_soft and (self.train_post is None or self.valid_post is None):
            raise AsrktError(f"loss.kd_alpha = {self.alpha} trains on soft targets: give --train-post and "
                             "--valid-post (dumped teacher posteriors)")
        if not need_soft and (self.train_post or self.valid_post):
            logger.warning("loss.kd_alpha = 0: the teacher posteriors given are not used")
            self.train_post = self.valid_post = None

        from asrkt.features.info import FEATS_INFO, check_same_features

        feats_info = check_same_features(self.train_dir, self.valid_dir)
        self.feats_hash = str(feats_info["config_hash"])

        self.tokenizer = None
        if self.lang_dir is not None:
            from asrkt.targets import Tokenizer

            self.tokenizer = Tokenizer.load(self.lang_dir)
        from asrkt.targets import build_objective

        self.objective = build_objective(cfg.objective)

        soft_train = soft_valid = None
        if need_soft:
            from asrkt.transfer.soft_targets import SoftTargets

            soft_train = SoftTargets(self.train_post, in_memory=cfg.keep_in_memory)
            soft_valid = SoftTargets(self.valid_post, in_memory=cfg.keep_in_memory)
            if soft_train.info.kind != soft_valid.info.kind or soft_train.info.teacher_checkpoint_sha1 != \
                    soft_valid.info.teacher_checkpoint_sha1:
                raise AsrktError(f"{self.train_post} and {self.valid_post} come from different teachers or are "
                                 "of different kinds; dump both with the same teacher")
        if self.tokenizer is not None:
            num_classes = self.tokenizer.num_classes
        else:
            num_classes = soft_train.info.num_classes

        t0 = time.perf_counter()
        self.train_set = UtteranceDataset(self.train_dir, tokenizer=self.tokenizer, soft_targets=soft_train,
                                          in_memory=cfg.keep_in_memory, norm_vars=cfg.cmvn_norm_vars)
        self.valid_set = UtteranceDataset(self.valid_dir, tokenizer=self.tokenizer, soft_targets=soft_valid,
                                          in_memory=cfg.keep_in_memory, norm_vars=cfg.cmvn_norm_vars)
        if self.train_set.feat_dim != int(feats_info["dim"]):
            raise fail(f"features have dimension {self.train_set.feat_dim} but {FEATS_INFO} says "
                       f"{feats_info['dim']}", self.train_dir / "feats.scp")
        logger.info("data: train %s (%d utts, %d frames), dev %s (%d utts, %d frames), dim %d, loaded in %.1fs",
                    self.train_dir, len(self.train_set), sum(self.train_set.num_frames), self.valid_dir,
                    len(self.valid_set), sum(self.valid_set.num_frames), self.train_set.feat_dim,
                    time.perf_counter() - t0)

        seed_everything(derive_seed(cfg.seed, "model-init"))
        self.model = build_model(cfg.model, self.train_set.feat_dim, num_classes)
        if self.init_from is not None:
            self._init_weights(self.init_from)
        self.model.to(self.device)
        logger.info("model: %s", describe(self.model))

        if need_soft:
            for soft, data_dir, dataset in ((soft_train, self.train_dir, self.train_set),
                                            (soft_valid, self.valid_dir, self.valid_set)):
                soft.check(dataset.frame_counts(), num_classes, self.model.subsampling, self.feats_hash,
                           tolerance=cfg.loss.frame_tolerance, feats_info_path=data_dir / FEATS_INFO)

        self.optimizer = self._make_optimizer()
        self.schedule = Newbob(cfg.schedule, cfg.optim.lr)
        self.train_sampler = FrameBatchSampler(self.train_set.num_frames, cfg.batch.max_frames, cfg.batch.max_utts,
                                               shuffle=cfg.batch.shuffle, seed=cfg.seed,
                                               length_jitter=cfg.batch.length_jitter)
        self.valid_sampler = FrameBatchSampler(self.valid_set.num_frames, cfg.batch.max_frames, cfg.batch.max_utts,
                                               shuffle=False)
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(self.train_set, self.train_sampler, pin_memory=pin)
        self.valid_loader = make_loader(self.valid_set, self.valid_sampler, pin_memory=pin)
        self._setup_done = True

    def _init_weights(self, path: Path) -> None:
        init_model, meta = load_model(path)
        try:
            self.model.load_state_dict(init_model.state_dict())
        except RuntimeError as e:
            changes = diff(init_model.config, self.cfg.model)
            detail = ("model config differences (saved -> current): " + "; ".join(changes)) if changes else \
                str(e).splitlines()[0]
            raise AsrktError(f"{path}: cannot initialise the model from this checkpoint: input dim "
                             f"{init_model.input_dim} / {init_model.num_classes} classes vs {self.model.input_dim} / "
                             f"{self.model.num_classes}; {detail}") from None
        logger.info("initialised from %s (%s)", path, ", ".join(f"{k} {v}" for k, v in meta.items()
                                                               if isinstance(v, (int, float, str))))

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        params = self.model.parameters()
        if o.optimizer == "adam":
            return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -------------------------------------------------------------------------------------------- losses
    def _soft_loss_sum(self, logits: torch.Tensor, out_lengths: torch.Tensor, batch) -> tuple[torch.Tensor, int]:
        """(sum over frames of T^2 KL, frames): frames valid for both the model output and the teacher."""
        T = min(logits.shape[1], batch.teacher_mask.shape[1])
        mask = (torch.arange(T, device=logits.device).unsqueeze(0) < out_lengths.to(logits.device).unsqueeze(1)) \
            & batch.teacher_mask[:, :T]
        student = logits[:, :T][mask]
        temperature = self.cfg.loss.temperature
        backend = self.cfg.loss.kd_backend
        if batch.teacher is not None:
            loss = kd_loss(student, batch.teacher[:, :T][mask], temperature, reduction="sum", backend=backend)
        else:
            loss = kd_loss_sparse(student, batch.teacher_indices[:, :T][mask], batch.teacher_values[:, :T][mask],
                                  temperature, reduction="sum", backend=backend)
        return loss, int(student.shape[0])

    def _losses(self, batch, need_hard: bool, need_soft: bool):
        """Forward; returns (loss to optimise, hard_sum, hard_frames, soft_sum, soft_frames, logits, out_lengths)."""
        logits, out_lengths = self.model(batch.feats, batch.lengths)
        hard_sum = soft_sum = None
        hard_frames = soft_frames = 0
        if need_hard:
            hard_sum = self.objective.loss(logits, out_lengths, batch.targets, batch.utts)
            hard_frames = self.objective.last_stats.frames
        if need_soft:
            soft_sum, soft_frames = self._soft_loss_sum(logits, out_lengths, batch)
        a = self.alpha
        terms = []
        if a < 1.0 and hard_sum is not None and hard_frames:
            terms.append((1.0 - a) * hard_sum / hard_frames)
        if a > 0.0 and soft_sum is not None and soft_frames:
            terms.append(a * soft_sum / soft_frames)
        loss = sum(terms) if terms else None
        return loss, hard_sum, hard_frames, soft_sum, soft_frames, logits, out_lengths

    # ---------------------------------------------------------------------------------------------- epochs
    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training data at the schedule's lr; returns the epoch's train statistics."""
        cfg = self.cfg
        self.model.train()
        seed_everything(derive_seed(cfg.seed, "epoch", epoch))
        self.train_sampler.set_epoch(epoch)
        num_batches = len(self.train_sampler)
        max_bad = int(cfg.max_bad_batch_fraction * num_batches)
        lr = self.optimizer.param_groups[0]["lr"]
        params = [p for p in self.model.parameters() if p.requires_grad]
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        sums, bad, frames, done = LossSums(), 0, 0, 0
        progress = EpochProgress(epoch, num_batches, cfg.log_interval_s)
        start = time.perf_counter()
        try:
            for batch in self.train_loader:
                batch = batch.to(self.device)
                done += 1
                reason = self._train_step(batch, params, clip, sums)
                frames += batch.num_frames
                progress.step(batch.num_frames, sums, self.alpha, lr)
                if reason is None:
                    continue
                bad += 1
                logger.warning("epoch %d batch %d/%d skipped: %s (utterances %s%s)", epoch, done, num_batches, reason,
                               ", ".join(batch.utts[:5]), ", ..." if len(batch.utts) > 5 else "")
                if bad > max_bad:
                    raise AsrktError(
                        f"{self.train_dir}: {bad} of {num_batches} batches in epoch {epoch} had a non-finite loss "
                        f"or gradient (more than max_bad_batch_fraction {cfg.max_bad_batch_fraction}); last one: "
                        f"{reason}, utterances {', '.join(batch.utts[:5])}. Check the features (NaN/inf), lower "
                        "optim.lr or set optim.grad_clip")
        finally:
            progress.close()
        elapsed = time.perf_counter() - start
        return {"lr": lr, "train_loss": sums.total(self.alpha), "train_hard": sums.hard, "train_soft": sums.soft,
                "frames_per_s": frames / elapsed if elapsed > 0 else 0.0, "train_time_s": elapsed,
                "bad_batches": bad, "batches": num_batches}

    def _train_step(self, batch, params, clip: float, sums: LossSums) -> str | None:
        """Forward, backward, clip, update; adds to ``sums``. Returns why the batch was skipped (non-finite loss
        or gradient: no update), else None."""
        loss, hard_sum, hard_frames, soft_sum, soft_frames, _, _ = self._losses(
            batch, need_hard=self.alpha < 1.0, need_soft=self.alpha > 0.0)
        if loss is None:  # every utterance infeasible for CTC: the objective warned; nothing to learn here
            return None
        value = loss.item()
        if not math.isfinite(value):
            return f"loss {value}"
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return f"gradient norm {norm.item()}"
        self.optimizer.step()
        sums.add(0.0 if hard_sum is None else hard_sum.item(), hard_frames,
                 0.0 if soft_sum is None else soft_sum.item(), soft_frames)
        return None

    @torch.no_grad()
    def validate(self) -> LossSums:
        """Dev pass: hard loss when transcripts are loaded, soft loss when posteriors are, greedy CTC TER."""
        self.model.eval()
        sums = LossSums()
        has_targets = self.valid_set.targets is not None
        has_soft = self.valid_set.soft_targets is not None
        for batch in self.valid_loader:
            batch = batch.to(self.device)
            _, hard_sum, hard_frames, soft_sum, soft_frames, logits, out_lengths = self._losses(
                batch, need_hard=has_targets, need_soft=has_soft)
            sums.add(0.0 if hard_sum is None else hard_sum.item(), hard_frames,
                     0.0 if soft_sum is None else soft_sum.item(), soft_frames)
            if has_targets:
                hyps = self.objective.greedy_decode(logits, out_lengths)
                for hyp, ref in zip(hyps, batch.targets):
                    sums.token_errors += token_errors(hyp, ref)
                    sums.ref_tokens += len(ref)
        return sums

    # ------------------------------------------------------------------------------------------ checkpoints
    def _ckpt_path(self, epoch: int) -> Path:
        return self.ckpt_dir / f"epoch_{epoch}.pt"

    def _model_path(self, epoch: int) -> Path:
        return self.ckpt_dir / f"epoch_{epoch}.model.pt"

    def _checkpoints(self) -> list[tuple[int, Path]]:
        found = []
        if self.ckpt_dir.is_dir():
            for p in self.ckpt_dir.iterdir():
                m = re.fullmatch(r"epoch_(\d+)\.pt", p.name)
                if m:
                    found.append((int(m.group(1)), p))
        return sorted(found)

    def _save_checkpoint(self, epoch: int) -> None:
        state = {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "schedule": self.schedule.state_dict(), "rng": rng_states(), "history": self.history,
                 "bad_batches_total": self.bad_batches_total, "config": to_dict(self.cfg)}
        with atomic_path(self._ckpt_path(epoch)) as tmp:
            torch.save(state, tmp)
        keep = self.cfg.keep_checkpoints
        if keep > 0:
            for n, p in self._checkpoints()[:-keep]:
                p.unlink(missing_ok=True)

    def _save_model(self, epoch: int, valid: dict) -> None:
        extra = {"epoch": epoch, "valid_loss": valid["valid_loss"], "valid_ter": valid["valid_ter"],
                 "kd_alpha": self.alpha, "temperature": self.cfg.loss.temperature, "seed": self.cfg.seed,
                 "feature_config_hash": self.feats_hash,
                 "lang_dir": str(self.lang_dir) if self.lang_dir else "",
                 "train_dir": str(self.train_dir)}
        save_checkpoint(self._model_path(epoch), self.model, extra=extra)

    def _link_final(self, epoch: int) -> None:
        final = self.exp_dir / "final.pt"
        tmp = self.exp_dir / f".final.pt.tmp{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(self._model_path(epoch), self.exp_dir), tmp)
        os.replace(tmp, final)

    def _resume(self) -> bool:
        """Load the newest readable checkpoint; False when there is none."""
        for epoch, path in reversed(self._checkpoints()):
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as e:  # a damaged file: fall back to the previous checkpoint
                logger.warning("%s: unreadable (%s), trying an older checkpoint", path, e)
                continue
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            set_rng_states(state["rng"])
            self.history = list(state["history"])
            self.bad_batches_total = int(state.get("bad_batches_total", 0))
            self._set_lr(self.schedule.lr)
            logger.info("resumed from %s: epoch %d done, lr %.4g, best epoch %d (dev loss %s)%s", path, epoch,
                        self.schedule.lr, self.schedule.best_epoch, _fmt(self.schedule.best_loss),
                        ", schedule already finished" if self.schedule.done else "")
            return True
        return False

    # --------------------------------------------------------------------------------------------- outputs
    def _write_summary(self) -> None:
        with atomic_open(self.exp_dir / "summary.tsv") as f:
            f.write("\t".join(SUMMARY_COLUMNS) + "\n")
            for row in self.history:
                f.write("\t".join(_format_cell(c, row[c]) for c in SUMMARY_COLUMNS) + "\n")

    def _plot(self) -> None:
        # The object API renders with Agg without touching pyplot's global backend or figure list.
        rows = self.history
        epochs = [r["epoch"] for r in rows]
        fig = new_figure(figsize=(10, 4))
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
        ax1.plot(epochs, [r["valid_loss"] for r in rows], "s-", label="dev")
        rejected = [r for r in rows if r["decision"] == "rejected"]
        if rejected:
            ax1.plot([r["epoch"] for r in rejected], [r["valid_loss"] for r in rejected], "rx", markersize=10,
                     label="rejected")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel(f"loss (kd_alpha {self.alpha:g})")
        ax1.legend()
        ax1.grid(alpha=0.3)
        ax2.plot(epochs, [r["valid_ter"] for r in rows], "s-", color="C2")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("dev token error rate (%), greedy CTC")
        ax2.grid(alpha=0.3)
        fig.suptitle(str(self.exp_dir))
        save_png(fig, self.exp_dir / "train_curves.png", dpi=90)

    # ------------------------------------------------------------------------------------------------- run
    def check_resume(self) -> None:
        """Refuse to resume (AsrktError) when the exp dir has checkpoints of a different config."""
        config_path = self.exp_dir / "config.yaml"
        if self._checkpoints():
            if not config_path.is_file():
                raise fail("has checkpoints but no config.yaml; remove the folder (or rerun with --overwrite true)",
                           self.exp_dir)
            check_same_config(config_path, self.cfg, ignore=RESUME_IGNORED_KEYS)

    def run(self) -> dict:
        """Train (or resume) until the schedule stops; returns a short summary of the run."""
        cfg = self.cfg
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        self.check_resume()
        self.setup()
        save_config(cfg, self.exp_dir / "config.yaml")
        run_start = time.perf_counter()

        if not self._resume():
            seed_everything(derive_seed(cfg.seed, "initial-dev"))
            sums = self.validate()
            initial = sums.total(self.alpha)
            logger.info("initial model: dev loss %s (hard %s, soft %s), token error rate %s%%", _fmt(initial),
                        _fmt(sums.hard), _fmt(sums.soft), _fmt(sums.ter))
            self.schedule.start(initial)
            self._set_lr(self.schedule.lr)

        while not self.schedule.done:
            epoch = self.schedule.epoch + 1
            # The state training continues from; restored if the dev loss rejects this epoch.
            snapshot = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))
            t0 = time.perf_counter()
            train = self.train_epoch(epoch)
            valid_sums = self.validate()
            elapsed = time.perf_counter() - t0
            valid_loss = valid_sums.total(self.alpha)
            decision = self.schedule.step(valid_loss)
            if not decision.accepted:
                self.model.load_state_dict(snapshot[0])
                self.optimizer.load_state_dict(snapshot[1])
            self._set_lr(decision.next_lr)
            self.bad_batches_total += train["bad_batches"]
            row = {"epoch": epoch, "lr": train["lr"], "train_loss": train["train_loss"],
                   "train_hard": train["train_hard"], "train_soft": train["train_soft"], "valid_loss": valid_loss,
                   "valid_hard": valid_sums.hard, "valid_soft": valid_sums.soft, "valid_ter": valid_sums.ter,
                   "frames_per_s": train["frames_per_s"], "epoch_time_s": elapsed,
                   "decision": "accepted" if decision.accepted else "rejected", "bad_batches": train["bad_batches"]}
            self.history.append(row)
            logger.info("epoch %d: train loss %s (hard %s, soft %s), dev loss %s (hard %s, soft %s), dev TER %s%%, "
                        "lr %.4g, %.0f frames/s, %.1fs (train %.1fs); %s, rel. improvement %.4f, next lr %.4g%s",
                        epoch, _fmt(row["train_loss"]), _fmt(row["train_hard"]), _fmt(row["train_soft"]),
                        _fmt(valid_loss), _fmt(valid_sums.hard), _fmt(valid_sums.soft), _fmt(valid_sums.ter),
                        train["lr"], train["frames_per_s"], elapsed, train["train_time_s"], row["decision"],
                        decision.rel_impr, decision.next_lr,
                        f"; stopping: {decision.reason}" if decision.stop else "")
            if train["bad_batches"]:
                logger.warning("epoch %d: %d of %d batches skipped (non-finite loss or gradient)", epoch,
                               train["bad_batches"], train["batches"])
            if decision.accepted:
                self._save_model(epoch, row)
            self._save_checkpoint(epoch)
            if self.schedule.best_epoch > 0:
                self._link_final(self.schedule.best_epoch)
            self._write_summary()
            self._plot()

        best = self.schedule.best_epoch
        if best == 0:  # no epoch beat the initial model: the initial model is the result
            self._save_model(0, {"valid_loss": self.schedule.best_loss, "valid_ter": float("nan")})
        self._link_final(best)
        if self.history:
            self._write_summary()
        logger.info("finished: %s; best epoch %d (dev loss %s) -> %s; %d skipped batches in all; %.1fs this run",
                    self.schedule.stop_reason, best, _fmt(self.schedule.best_loss), self.exp_dir / "final.pt",
                    self.bad_batches_total, time.perf_counter() - run_start)
        return {"best_epoch": best, "best_loss": self.schedule.best_loss, "epochs": self.schedule.epoch,
                "stop_reason": self.schedule.stop_reason, "bad_batches": self.bad_batches_total}
