"""The training loop shared by every asrkt system: teacher, KT pre-training, fine-tuning, baselines, and every
transfer method that plugs in.

The loop knows nothing of particular losses, objectives or methods. It asks

* the **objective** (:mod:`asrkt.targets`) for the output size, the targets of a data dir and the dev metric;
* the **loss terms** (:mod:`asrkt.train.terms`) for ``(sum, count)`` per batch; the loss of record is
  ``sum_i weight_i * sum_i / count_i`` (per batch for the update, over the whole epoch for the logs, so the
  train and dev numbers are comparable), and only the inputs the active terms declare are loaded;
* the **initialiser** (:mod:`asrkt.train.init`) how ``init_from`` initialises the model;
* the **epoch hooks** (:mod:`asrkt.train.hooks`) whether to change the model between epochs;
* the **schedule** (:mod:`asrkt.train.schedule`) for the learning rate, which epoch to keep and when the dev loss
  has converged.

Distributed (``torchrun``, :mod:`asrkt.train.distributed`): every rank draws the same global batches and trains
on its share of each; the per-term sums and counts of a batch are summed over the ranks before the loss is
formed, so each rank's loss is ``world x sum_i weight_i * local_sum_i / global_count_i`` and DDP's averaged
gradient is the one-process gradient. The dev pass is split the same way and its sums are added up. Rank 0
alone writes the exp folder; every rank reads it to resume.

Exp folder: ``config.yaml`` (resolved), ``log/train.log`` (by the caller), ``checkpoints/`` and ``final.pt``
(:mod:`asrkt.train.checkpoints`), ``summary.tsv`` and ``train_curves.png`` (:mod:`asrkt.train.reporting`),
``train_info.yaml`` (objective, terms, epochs, stop reason, time; written when training ends). Rerunning in a
folder with checkpoints resumes from the last one, and refuses if the config changed.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import torch
import yaml

from asrkt.data.dataset import FrameBatchSampler, ShardedBatchSampler, UtteranceDataset, make_loader
from asrkt.train import distributed
from asrkt.train.distributed import SINGLE, DistInfo
from asrkt.train.terms import (HARD_TARGETS, STUDENT_HIDDEN, TEACHER_FORWARD, TEACHER_POSTERIORS, ModelOutput,
                                TeacherTargets, build_term)
from asrkt.models import build_model, describe, load_model, save_checkpoint
from asrkt.targets import build_objective
from asrkt.train.checkpoints import Checkpoints
from asrkt.train.config import RESUME_IGNORED_KEYS, TrainConfig, check_train_config, loss_term_specs
from asrkt.train.hooks import build_hook
from asrkt.train.init import InitData, initialize
from asrkt.train import methods  # noqa: F401  (registers the pkt term, the dils hook, the tli initialiser)
from asrkt.train.reporting import (EpochProgress, LossStats, fmt, plot_curves, stats_row, summary_columns,
                                   write_summary)
from asrkt.train.schedule import Newbob
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.config import check_same_config, from_dict, save_config, to_dict
from asrkt.utils.device import resolve_device
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.seed import derive_seed, rng_states, seed_everything, set_rng_states

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainConfig", "resolve_device"]


class _Source:
    """A per-utterance input for :meth:`UtteranceDataset.add_source`: ``getter(utt)`` and a collate function."""

    def __init__(self, getter, collate):
        self._get, self.collate = getter, collate

    def __getitem__(self, utt):
        return self._get(utt)


class Trainer:
    """One training run in ``exp_dir``; :meth:`run` trains (or resumes) until the schedule stops.

    ``targets_dir``: the objective's targets (the lang dir for CTC); needed by terms on hard targets and for the
    dev metric. ``train_post``/``valid_post``: dumped teacher posterior dirs, for terms that declare them.
    ``init_from``: a model checkpoint that initialises the model (``cfg.init`` says how). ``teacher_model``: a
    model checkpoint run alongside the student, for terms on the teacher's on-the-fly outputs. ``dist``: this
    process's rank among the training processes (default: one process); :meth:`setup` joins the process group.
    """

    def __init__(self, cfg: TrainConfig, train_dir, valid_dir, exp_dir, targets_dir=None, train_post=None,
                 valid_post=None, init_from=None, teacher_model=None, lang_dir=None, dist: DistInfo | None = None):
        check_train_config(cfg)
        self.cfg = cfg
        self.dist = dist or SINGLE
        self.train_dir, self.valid_dir, self.exp_dir = Path(train_dir), Path(valid_dir), Path(exp_dir)
        targets_dir = targets_dir or lang_dir
        self.targets_dir = Path(targets_dir) if targets_dir else None
        self.train_post = Path(train_post) if train_post else None
        self.valid_post = Path(valid_post) if valid_post else None
        init_from, teacher_model = init_from or cfg.init.from_model, teacher_model or cfg.loss.teacher_model
        self.init_from = Path(init_from) if init_from else None
        self.teacher_model_path = Path(teacher_model) if teacher_model else None
        self.checkpoints = Checkpoints(self.exp_dir, cfg.keep_checkpoints)
        self.history: list[dict] = []
        self.bad_batches_total = 0
        self.teacher = None
        self._setup_done = False

    # ------------------------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        """Load data, targets, posteriors, model, terms and hooks; check they fit together. Idempotent."""
        if self._setup_done:
            return
        cfg = self.cfg
        torch.set_num_threads(cfg.num_threads)
        self.device = distributed.device_for(self.dist, resolve_device(cfg.device))
        distributed.init_process_group(self.dist, self.device)
        self.objective = build_objective(cfg.objective, self.targets_dir)
        defaults = {"temperature": cfg.loss.temperature, "backend": cfg.loss.kd_backend}
        self.terms = [build_term(spec, defaults) for spec in loss_term_specs(cfg.loss, self.objective.hard_term)]
        names = [t.name for t in self.terms]
        if not self.terms or len(set(names)) != len(names):
            raise AsrktError(f"loss.terms: need at least one term and no name twice, got {names}")
        self.weights = {t.name: t.weight for t in self.terms}
        self.needs = needs = {i for t in self.terms for i in t.inputs}
        self._check_inputs_given(needs)

        from asrkt.features.info import FEATS_INFO, check_same_features

        feats_info = check_same_features(self.train_dir, self.valid_dir)
        self.feats_hash = str(feats_info["config_hash"])
        if self.targets_dir is not None:
            self.objective.check_train_data(self.train_dir)
        soft = self._load_posteriors() if TEACHER_POSTERIORS in needs else None
        self.teacher_posteriors_sparse = soft is not None and soft[0].sparse
        num_classes = self.objective.num_classes if self.targets_dir else soft[0].info.num_classes

        t0 = time.perf_counter()
        self.train_set, self.valid_set = (
            UtteranceDataset(d, in_memory=cfg.keep_in_memory, norm_vars=cfg.cmvn_norm_vars)
            for d in (self.train_dir, self.valid_dir))
        if self.train_set.feat_dim != int(feats_info["dim"]):
            raise fail(f"features have dimension {self.train_set.feat_dim} but {FEATS_INFO} says "
                       f"{feats_info['dim']}", self.train_dir / "feats.scp")
        logger.info("data: train %s (%d utts, %d frames), dev %s (%d utts, %d frames), dim %d, loaded in %.1fs",
                    self.train_dir, len(self.train_set), sum(self.train_set.num_frames), self.valid_dir,
                    len(self.valid_set), sum(self.valid_set.num_frames), self.train_set.feat_dim,
                    time.perf_counter() - t0)

        seed_everything(derive_seed(cfg.seed, "model-init"))
        self.model = build_model(cfg.model, self.train_set.feat_dim, num_classes)
        resuming = bool(self.checkpoints.epochs())  # a resumed run's checkpoint holds the weights: no pre-training
        self.init_meta = initialize(self.model, self.init_from, cfg.init, None if resuming else InitData(
            self.train_set, self.device, cfg.seed, cfg.batch))
        self.model.to(self.device)
        self.step_model = distributed.wrap(self.model, self.dist, self.device)
        logger.info("model: %s", describe(self.model))
        self._attach_sources(needs, soft, feats_info_name=FEATS_INFO)
        if TEACHER_FORWARD in needs:
            self.teacher, _ = load_model(self.teacher_model_path)
            self.teacher.to(self.device).eval()
            logger.info("on-the-fly teacher %s: %s", self.teacher_model_path, describe(self.teacher))
        for term in self.terms:
            term.setup(self)
        logger.info("objective %s; loss = %s", self.objective.name, " + ".join(t.describe() for t in self.terms))
        coupled = [t.name for t in self.terms if t.batch_coupled]
        if self.dist.enabled and coupled and self.dist.is_main:
            logger.warning("loss term(s) %s couple the utterances of a batch: each of the %d processes computes them "
                           "over its share of the batch, so they differ from a one-process run (the other terms do "
                           "not)", ", ".join(coupled), self.dist.world)
        self.hooks = [build_hook(spec) for spec in cfg.hooks]

        self.optimizer = self._make_optimizer()
        self.schedule = Newbob(cfg.schedule, cfg.optim.lr)
        b = cfg.batch
        self.train_sampler = FrameBatchSampler(self.train_set.num_frames, b.max_frames, b.max_utts, shuffle=b.shuffle,
                                               seed=cfg.seed, length_jitter=b.length_jitter)
        self.valid_sampler = FrameBatchSampler(self.valid_set.num_frames, b.max_frames, b.max_utts, shuffle=False)
        if self.dist.enabled:  # each rank its share of every global batch (the same batches on every rank)
            self.train_sampler, self.valid_sampler = (ShardedBatchSampler(s, self.dist.rank, self.dist.world)
                                                      for s in (self.train_sampler, self.valid_sampler))
        self.train_loader = make_loader(self.train_set, self.train_sampler)
        self.valid_loader = make_loader(self.valid_set, self.valid_sampler)
        self.metric = self.objective.metric if HARD_TARGETS in self.valid_set.sources else None
        self.columns = summary_columns(names, self.metric)
        self._setup_done = True

    def _check_inputs_given(self, needs: set[str]) -> None:
        who = {i: [t.name for t in self.terms if i in t.inputs] for i in needs}
        if HARD_TARGETS in needs and self.targets_dir is None:
            raise AsrktError(f"loss term(s) {', '.join(who[HARD_TARGETS])} train on the {self.objective.name} "
                             "targets: give --targets-dir (--lang-dir)")
        if TEACHER_POSTERIORS in needs and (self.train_post is None or self.valid_post is None):
            raise AsrktError(f"loss term(s) {', '.join(who[TEACHER_POSTERIORS])} train on dumped teacher "
                             "posteriors: give --train-post and --valid-post")
        if TEACHER_POSTERIORS not in needs and (self.train_post or self.valid_post):
            logger.warning("no loss term uses teacher posteriors: %s, %s are not used", self.train_post,
                           self.valid_post)
            self.train_post = self.valid_post = None
        if TEACHER_FORWARD in needs and self.teacher_model_path is None:
            raise AsrktError(f"loss term(s) {', '.join(who[TEACHER_FORWARD])} need an on-the-fly teacher: give "
                             "--teacher-model")
        if self.targets_dir is None and TEACHER_POSTERIORS not in needs:
            raise AsrktError("nothing gives the output size: give --targets-dir (--lang-dir)")

    def _load_posteriors(self):
        from asrkt.transfer.soft_targets import SoftTargets

        pair = tuple(SoftTargets(p, in_memory=self.cfg.keep_in_memory) for p in (self.train_post, self.valid_post))
        a, b = pair[0].info, pair[1].info
        if a.kind != b.kind or a.teacher_checkpoint_sha1 != b.teacher_checkpoint_sha1:
            raise AsrktError(f"{self.train_post} and {self.valid_post} come from different teachers or are of "
                             "different kinds; dump both with the same teacher")
        return pair

    def _attach_sources(self, needs: set[str], soft, feats_info_name: str) -> None:
        sub = self.model.subsampling
        for i, (data_dir, dataset) in enumerate(((self.train_dir, self.train_set), (self.valid_dir, self.valid_set))):
            dev = i == 1
            if self.targets_dir is not None and (HARD_TARGETS in needs or dev):  # dev: the metric needs them
                dataset.add_source(HARD_TARGETS, self.objective.target_source(data_dir, dataset.utts, sub))
            if soft is not None:
                soft[i].check(dataset.frame_counts(), self.model.num_classes, sub, self.feats_hash,
                              tolerance=self.cfg.loss.frame_tolerance, feats_info_path=data_dir / feats_info_name)
                dataset.add_source(TEACHER_POSTERIORS, _Source(soft[i].__getitem__, TeacherTargets.collate))

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        if o.optimizer == "adam":
            return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def replace_model(self, model: torch.nn.Module, reason: str) -> None:
        """For hooks: train ``model`` from now on; the optimizer is rebuilt at the current learning rate."""
        lr = self.optimizer.param_groups[0]["lr"]
        self.model = model.to(self.device)
        self.step_model = distributed.wrap(self.model, self.dist, self.device)
        self.optimizer = self._make_optimizer()
        self.set_lr(lr)
        logger.info("model replaced (%s): %s", reason, describe(self.model))

    # -------------------------------------------------------------------------------------------- losses
    def forward(self, batch, train: bool = False) -> ModelOutput:
        """The model's outputs (and the on-the-fly teacher's); ``train``: through DDP, whose gradients it syncs."""
        with_hidden = STUDENT_HIDDEN in self.needs
        if train:
            out = ModelOutput(*self.step_model(batch.feats, batch.lengths, with_hidden))
        elif with_hidden:
            out = ModelOutput(*self.model.forward_with_hidden(batch.feats, batch.lengths))
        else:
            out = ModelOutput(*self.model(batch.feats, batch.lengths))
        if self.teacher is not None:
            with torch.no_grad():
                t_logits, t_lengths, t_hidden = self.teacher.forward_with_hidden(batch.feats, batch.lengths)
            out.teacher = ModelOutput(t_logits, t_lengths, t_hidden)
        return out

    def compute_terms(self, out: ModelOutput, batch) -> tuple[torch.Tensor | None, dict]:
        """(weighted loss of the batch or None when no term had units, {term: (sum, count)})."""
        parts, loss = {}, None
        for term in self.terms:
            value, count = term(out, batch)
            parts[term.name] = (value, count)
            if value is not None and count:
                piece = term.weight * value / count
                loss = piece if loss is None else loss + piece
        return loss, parts

    @staticmethod
    def _add(stats: LossStats, parts: dict) -> None:
        for name, (value, count) in parts.items():
            if value is not None and count:
                stats.add(name, float(value.item()) if isinstance(value, torch.Tensor) else value, count)

    def _global_totals(self, parts: dict, frames: int) -> tuple[dict, int]:
        """{term: (sum, count)} and the frames of the whole batch: this rank's, summed over the ranks (one
        all-reduce per batch) when distributed."""
        totals = {name: (float(v.item()), int(c)) if v is not None and c else (0.0, 0)
                  for name, (v, c) in parts.items()}
        if not self.dist.enabled:
            return totals, frames
        names = list(totals)
        flat = distributed.all_reduce_sum([totals[n][0] for n in names] + [totals[n][1] for n in names] + [frames],
                                          self.device)
        k = len(names)
        return {n: (flat[i], int(flat[k + i])) for i, n in enumerate(names)}, int(flat[-1])

    def _all_reduce_stats(self, stats: LossStats) -> None:
        """Add up the ranks' dev statistics (each rank saw its share of the dev batches)."""
        names = list(stats.weights)
        flat = distributed.all_reduce_sum([stats.sums[n] for n in names] + [stats.counts[n] for n in names]
                                          + [stats.errors, stats.units], self.device)
        k = len(names)
        for i, n in enumerate(names):
            stats.sums[n], stats.counts[n] = flat[i], int(flat[k + i])
        stats.errors, stats.units = int(flat[-2]), int(flat[-1])

    # ---------------------------------------------------------------------------------------------- epochs
    def train_epoch(self, epoch: int | str) -> dict:
        """One pass over the training data at the optimizer's lr; returns the epoch's train statistics. ``epoch``
        seeds the pass and names it in the logs (a hook's extra passes use a label such as ``"layerwise-1.1"``)."""
        cfg = self.cfg
        self.model.train()
        seed_everything(derive_seed(cfg.seed, "epoch", epoch))
        self.train_sampler.set_epoch(epoch)
        num_batches = len(self.train_sampler)
        max_bad = int(cfg.max_bad_batch_fraction * num_batches)
        lr = self.optimizer.param_groups[0]["lr"]
        stats, bad, frames = LossStats(self.weights), 0, 0
        progress = EpochProgress(epoch, num_batches, cfg.log_interval_s, bar=self.dist.is_main)
        start = time.perf_counter()
        try:
            for done, batch in enumerate(self.train_loader, 1):
                batch = batch.to(self.device)
                standin = self.dist.enabled and self.train_sampler.is_standin(done - 1)
                reason, batch_frames = self._train_step(batch, stats, standin)
                frames += batch_frames
                progress.step(batch_frames, stats, lr)
                if reason is None:
                    continue
                bad += 1  # (the same on every rank: the decision is taken on the summed statistics)
                culprits = [] if standin else batch.nonfinite_utts()
                where = (f"non-finite features in utterance(s) {', '.join(culprits)} of {self.train_dir}/feats.scp"
                         if culprits else f"utterances {', '.join(batch.utts[:5])}{', ...' * (len(batch.utts) > 5)}")
                # Distributed: the rank that holds the culprits names them; rank 0 speaks when none does.
                named = int(distributed.all_reduce_sum([len(culprits)], self.device)[0]) if self.dist.enabled \
                    else len(culprits)
                if culprits or (not named and self.dist.is_main):
                    logger.warning("epoch %s batch %d/%d skipped: %s (%s)", epoch, done, num_batches, reason, where)
                if bad > max_bad:
                    raise AsrktError(
                        f"{self.train_dir}: {bad} of {num_batches} batches in epoch {epoch} had a non-finite loss "
                        f"or gradient (more than max_bad_batch_fraction {cfg.max_bad_batch_fraction}); last one: "
                        f"{reason}, {where}. Check the features (NaN/inf), lower optim.lr or set optim.grad_clip")
        finally:
            progress.close()
        elapsed = time.perf_counter() - start
        return {"lr": lr, "stats": stats, "frames_per_s": frames / elapsed if elapsed > 0 else 0.0,
                "train_time_s": elapsed, "bad_batches": bad, "batches": num_batches}

    def _train_step(self, batch, stats: LossStats, standin: bool = False) -> tuple[str | None, int]:
        """Forward, backward, clip, update; adds the batch's statistics (of all ranks) to ``stats``. Returns why
        the batch was skipped (non-finite loss or gradient: no update) or None, and the batch's frames (all
        ranks). ``standin``: this rank's part is a stand-in (asrkt.data.dataset.ShardedBatchSampler), weight 0."""
        out = self.forward(batch, train=True)
        parts = {term.name: term(out, batch) for term in self.terms}
        if standin:
            parts = {name: (None, 0) for name in parts}
        totals, frames = self._global_totals(parts, 0 if standin else batch.num_frames)
        active = [t for t in self.terms if totals[t.name][1]]
        if not active:  # e.g. every utterance infeasible for CTC: the objective warned; nothing to learn
            return None, frames
        value = sum(t.weight * totals[t.name][0] / totals[t.name][1] for t in active)
        if not math.isfinite(value):
            return f"loss {value}", frames
        # Normalised by the global counts; x world because DDP averages the ranks' gradients.
        loss = None
        for term in active:
            v, c = parts[term.name]
            if v is not None and c:
                piece = term.weight * v / totals[term.name][1]
                if self.dist.enabled:
                    piece = piece * self.dist.world
                loss = piece if loss is None else loss + piece
        if self.dist.enabled:  # every parameter in the graph on every rank, also with no units here (DDP waits)
            anchor = out.logits.sum() * 0.0
            loss = anchor if loss is None else loss + anchor
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return f"gradient norm {norm.item()}", frames
        self.optimizer.step()
        self._add(stats, totals)
        return None, frames

    @torch.no_grad()
    def validate(self) -> LossStats:
        """Dev pass: every term, and the objective's metric when the dev set has its targets."""
        self.model.eval()
        stats = LossStats(self.weights)
        for i, batch in enumerate(self.valid_loader):
            if self.dist.enabled and self.valid_sampler.is_standin(i):
                continue
            batch = batch.to(self.device)
            out = self.forward(batch)
            self._add(stats, self.compute_terms(out, batch)[1])
            if self.metric:
                errors, units = self.objective.errors(out.logits, out.out_lengths, batch.inputs[HARD_TARGETS])
                stats.errors += errors
                stats.units += units
        if self.dist.enabled:
            self._all_reduce_stats(stats)
        return stats

    # ------------------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch: int) -> None:
        if not self.dist.is_main:
            return
        self.checkpoints.save(epoch, {
            "epoch": epoch, "model_config": to_dict(self.model.config), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "hooks": [h.state_dict() for h in self.hooks], "rng": rng_states(), "history": self.history,
            "bad_batches_total": self.bad_batches_total, "config": to_dict(self.cfg)})

    def _model_extra(self, epoch: int, valid_loss: float, valid_metric: float) -> dict:
        """What a model file holds next to the weights (asrkt.models.save_checkpoint's ``extra``)."""
        return {"epoch": epoch, "valid_loss": valid_loss, "objective": self.objective.name,
                "metric": self.metric or "", "valid_metric": valid_metric, "loss_terms": dict(self.weights),
                "seed": self.cfg.seed, "feature_config_hash": self.feats_hash,
                "targets_dir": str(self.targets_dir) if self.targets_dir else "", "train_dir": str(self.train_dir)}

    def _save_model(self, epoch: int, valid_loss: float, valid_metric: float) -> None:
        if not self.dist.is_main:
            return
        self.checkpoints.save_model(epoch, self.model, extra=self._model_extra(epoch, valid_loss, valid_metric))

    def save_model_copy(self, path, row: dict) -> None:
        """The current model as a model file at ``path`` (loadable like final.pt), with epoch ``row``'s dev
        figures; rank 0 only. For hooks that keep intermediate models (DILS: the best model of each depth)."""
        if not self.dist.is_main:
            return
        save_checkpoint(path, self.model, extra=self._model_extra(
            row["epoch"], row["valid_loss"], row.get(f"valid_{self.metric}", float("nan"))))

    def _resume(self) -> bool:
        """Load the newest readable checkpoint; False when there is none."""
        found = self.checkpoints.load_latest()
        if found is None:
            return False
        epoch, path, state = found
        saved_model = from_dict(type(self.model.config), state["model_config"], str(path)) \
            if "model_config" in state else self.model.config
        if saved_model != self.model.config:  # a hook changed the architecture before this checkpoint
            self.replace_model(build_model(saved_model, self.model.input_dim, self.model.num_classes),
                               f"architecture of {path}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        for hook, hook_state in zip(self.hooks, state.get("hooks", [])):
            hook.load_state_dict(hook_state)
        set_rng_states(state["rng"])
        self.history = list(state["history"])
        self.bad_batches_total = int(state.get("bad_batches_total", 0))
        self.set_lr(self.schedule.lr)
        logger.info("resumed from %s: epoch %d done, lr %.4g, best epoch %d (dev loss %s)%s", path, epoch,
                    self.schedule.lr, self.schedule.best_epoch, fmt(self.schedule.best_loss),
                    ", schedule already finished" if self.schedule.done else "")
        return True

    def _write_reports(self) -> None:
        if not self.dist.is_main:
            return
        write_summary(self.exp_dir / "summary.tsv", self.columns, self.history)
        plot_curves(self.exp_dir / "train_curves.png", str(self.exp_dir), self.history, list(self.weights),
                    self.metric, self.objective.metric_label if self.metric else "")

    def _write_train_info(self, run_time: float) -> None:
        if not self.dist.is_main:
            return
        s = self.schedule
        info = {"objective": self.objective.name, "metric": self.metric or "", "loss_terms": dict(self.weights),
                "model_type": self.model.config.type, "best_epoch": s.best_epoch, "epochs": s.epoch,
                "stop_reason": s.stop_reason, "best_valid_loss": s.best_loss,
                "train_time_s": round(sum(r["epoch_time_s"] for r in self.history), 2),
                "last_run_time_s": round(run_time, 2), "bad_batches": self.bad_batches_total,
                "init_from": str(self.init_from) if self.init_from else "",
                "hooks": [h.name for h in self.hooks]}
        atomic_write_text(self.exp_dir / "train_info.yaml", yaml.safe_dump(info, sort_keys=False))

    # ------------------------------------------------------------------------------------------------- run
    def check_resume(self) -> None:
        """Refuse to resume (AsrktError) when the exp dir has checkpoints of a different config."""
        config_path = self.exp_dir / "config.yaml"
        if self.checkpoints.epochs():
            if not config_path.is_file():
                raise fail("has checkpoints but no config.yaml; remove the folder (or rerun with --overwrite true)",
                           self.exp_dir)
            check_same_config(config_path, self.cfg, ignore=RESUME_IGNORED_KEYS)

    def _start(self) -> None:
        for hook in self.hooks:
            hook.on_train_start(self)
        seed_everything(derive_seed(self.cfg.seed, "initial-dev"))
        stats = self.validate()
        logger.info("initial model: dev loss %s (%s)%s", fmt(stats.total()), stats.terms_text(),
                    f", dev {self.metric} {fmt(stats.metric)}%" if self.metric else "")
        self.schedule.start(stats.total())
        self.set_lr(self.schedule.lr)

    def run_epoch(self, epoch: int) -> dict:
        """Hooks, one epoch of training, the dev pass and the schedule's decision; returns the summary row."""
        for hook in self.hooks:
            hook.on_epoch_start(self, epoch)
        # The state training continues from; restored if the schedule rejects this epoch.
        snapshot = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))
        t0 = time.perf_counter()
        train = self.train_epoch(epoch)
        valid = self.validate()
        elapsed = time.perf_counter() - t0
        decision = self.schedule.step(valid.total(), valid.metric if self.metric else None)
        if not decision.accepted:
            self.model.load_state_dict(snapshot[0])
            self.optimizer.load_state_dict(snapshot[1])
        self.set_lr(decision.next_lr)
        self.bad_batches_total += train["bad_batches"]
        row = {"epoch": epoch, "lr": train["lr"], **stats_row("train", train["stats"]), **stats_row("valid", valid),
               "frames_per_s": train["frames_per_s"], "epoch_time_s": elapsed,
               "decision": "accepted" if decision.accepted else "rejected", "bad_batches": train["bad_batches"]}
        if self.metric:
            row[f"valid_{self.metric}"] = valid.metric
        self.history.append(row)
        logger.info("epoch %d: train loss %s (%s), dev loss %s (%s)%s, lr %.4g, %.0f frames/s, %.1fs (train %.1fs); "
                    "%s, rel. improvement %.4f, next lr %.4g%s", epoch, fmt(row["train_loss"]),
                    train["stats"].terms_text(), fmt(row["valid_loss"]), valid.terms_text(),
                    f", dev {self.metric} {fmt(valid.metric)}%" if self.metric else "", train["lr"],
                    train["frames_per_s"], elapsed, train["train_time_s"],
                    row["decision"] if decision.stop else decision.reason, decision.rel_impr, decision.next_lr,
                    f"; stopping: {decision.reason}" if decision.stop else "")
        if train["bad_batches"] and self.dist.is_main:
            logger.warning("epoch %d: %d of %d batches skipped (non-finite loss or gradient)", epoch,
                           train["bad_batches"], train["batches"])
        if decision.best:
            self._save_model(epoch, row["valid_loss"], row.get(f"valid_{self.metric}", float("nan")))
        for hook in self.hooks:
            hook.on_epoch_end(self, epoch, row)
        return row

    def run(self) -> dict:
        """Train (or resume) until the schedule stops; returns a short summary of the run."""
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        self.check_resume()
        self.setup()
        main = self.dist.is_main  # rank 0 alone writes the exp folder
        if main:
            save_config(self.cfg, self.exp_dir / "config.yaml")
        run_start = time.perf_counter()
        if not self._resume():
            self._start()
        while not self.schedule.done:
            self.run_epoch(self.schedule.epoch + 1)
            self._save_checkpoint(self.schedule.epoch)
            if main:
                if self.schedule.best_epoch > 0:
                    self.checkpoints.link_final(self.schedule.best_epoch)
                self.checkpoints.prune_models(self.schedule.best_epoch)
            self._write_reports()

        best = self.schedule.best_epoch
        if best == 0:  # no epoch beat the initial model: the initial model is the result
            self._save_model(0, self.schedule.best_loss, float("nan"))
        if main:
            self.checkpoints.link_final(best)
        if self.history:
            self._write_reports()
        self._write_train_info(time.perf_counter() - run_start)
        logger.info("finished after %d epochs: %s; best epoch %d (dev loss %s) -> %s; %d skipped batches in all; "
                    "%.1fs this run", self.schedule.epoch, self.schedule.stop_reason, best,
                    fmt(self.schedule.best_loss), self.exp_dir / "final.pt", self.bad_batches_total,
                    time.perf_counter() - run_start)
        return {"best_epoch": best, "best_loss": self.schedule.best_loss, "epochs": self.schedule.epoch,
                "stop_reason": self.schedule.stop_reason, "bad_batches": self.bad_batches_total}
