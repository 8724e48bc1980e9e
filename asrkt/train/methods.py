"""The registrations of the knowledge-transfer methods of :mod:`asrkt.transfer` on the trainer's extension points:
the loss term ``pkt``, the epoch hook ``dils`` and the initialiser ``tli`` (each computed in its own module,
``asrkt.transfer.{pkt,dils,tli}``), and the layer-wise pre-training: the initialiser ``dbn`` (RBMs,
``asrkt.transfer.rbm``) and the hook ``layerwise`` (``asrkt.transfer.layerwise``). Imported by
:mod:`asrkt.train.trainer`, so every trainer knows them.

They live here, not next to the methods, because the dependency runs asrkt.train -> asrkt.transfer (the trainer
reads dumped posteriors with asrkt.transfer.soft_targets), and the package import graph has no cycles
(tests/test_package_imports.py).
"""
from __future__ import annotations

import dataclasses
import logging

from asrkt.train.hooks import EpochHook, register_hook
from asrkt.train.init import InitData, register_initializer
from asrkt.train.terms import STUDENT_HIDDEN, TEACHER_FORWARD, LossTerm, register_term
from asrkt.transfer import dils, layerwise, pkt, rbm, tli
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.errors import AsrktError
from asrkt.utils.seed import derive_seed

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------- PKT
@dataclasses.dataclass
class PktOptions:
    student_layer: int = -1  # index into the student's hidden layers (input side first; -1: the last)
    teacher_layer: int = -1  # index into the on-the-fly teacher's hidden layers
    max_frames: int = 512  # frames per batch in the (frames x frames) kernels, drawn seeded; 0: all
    seed: int = 0  # added to the per-batch seed (which is derived from the batch's utterance ids)


@register_term
class PktTerm(LossTerm):
    """Probabilistic knowledge transfer (asrkt.transfer.pkt): sum over frames of KL(teacher || student) between
    the cosine-similarity distributions of a student and a teacher hidden layer; count = frames used."""

    name = "pkt"
    inputs = (STUDENT_HIDDEN, TEACHER_FORWARD)
    Options = PktOptions
    batch_coupled = True

    def setup(self, trainer) -> None:
        s, t = trainer.model.subsampling, trainer.teacher.subsampling
        if s != t:
            raise AsrktError(f"loss term 'pkt': the student (model.subsampling {s}) and the teacher "
                             f"{trainer.teacher_model_path} (subsampling {t}) run at different frame rates; PKT "
                             "compares the same frames through both")
        if self.options.max_frames < 0:
            raise AsrktError(f"loss term 'pkt': max_frames must be >= 0, got {self.options.max_frames}")

    @staticmethod
    def _layer(hidden, index, who):
        try:
            return hidden[index]
        except IndexError:
            raise AsrktError(f"loss term 'pkt': {who}_layer {index} does not exist: the {who} has {len(hidden)} "
                             "hidden layers") from None

    def __call__(self, out, batch):
        o = self.options
        student = self._layer(out.hidden, o.student_layer, "student")
        teacher = self._layer(out.teacher.hidden, o.teacher_layer, "teacher")
        s, t = pkt.paired_frames(student, out.out_lengths, teacher, out.teacher.out_lengths)
        idx = pkt.select_frames(s.shape[0], o.max_frames, pkt.batch_seed(batch.utts, o.seed), s.device)
        if idx is not None:
            s, t = s[idx], t[idx]
        if s.shape[0] < 2:
            return None, 0
        return pkt.pkt_loss(s, t), int(s.shape[0])


# ---------------------------------------------------------------------------------------------------- DILS
DEPTHS_DIR = "dils"  # in the exp folder: depth_<N>.pt (the best model of each depth) and depths.tsv
@dataclasses.dataclass
class DilsOptions:
    every: int = 0  # insert a layer before every epoch 1 + k * every (k >= 1); 0: only at_epochs
    at_epochs: list[int] = dataclasses.field(default_factory=list)  # insert before these epochs
    # Instead: insert a layer each time the schedule converges (each depth trained to convergence, as DILS does),
    # and start the schedule over (initial lr, not halving); the run ends when a depth brings no gain.
    at_convergence: bool = False
    max_layers: int = 0  # target depth (hidden layers); 0: no limit
    until_no_gain: bool = True  # stop inserting once a depth's best dev loss is no better than the one below
    fit_samples: int = 2000  # frames of training activations for the least-squares fit (sigmoid, tanh)


@register_hook
class DilsHook(EpochHook):
    """Depth-incremental learning (asrkt.transfer.dils): before the chosen epochs, insert an identity-initialised
    (ReLU) or least-squares-fitted (sigmoid, tanh) hidden layer on top of a DNN; DNN only. Keeps the best model
    of each depth as <exp>/dils/depth_<N>.pt and a table of the depths (epochs, time, best dev loss) in
    <exp>/dils/depths.tsv."""

    name = "dils"
    Options = DilsOptions

    def __init__(self, options=None):
        super().__init__(options)
        o = self.options
        if o.every < 0 or o.max_layers < 0 or o.fit_samples < 2 or any(e < 2 for e in o.at_epochs):
            raise AsrktError("hooks 'dils': every and max_layers must be >= 0, fit_samples >= 2 and at_epochs >= 2 "
                             f"(a layer is inserted before an epoch, after training), got {o}")
        if bool(o.every or o.at_epochs) == o.at_convergence:
            raise AsrktError("hooks 'dils': give every (epochs), at_epochs, or at_convergence: true (one of them)")
        self.best_by_depth: dict[int, float] = {}
        self.stopped = ""
        self.pending = False  # at_convergence: the depth converged, a layer goes in before the next epoch

    def on_train_start(self, trainer) -> None:
        dils.check_deepenable(trainer.model)

    def _due(self, epoch: int) -> bool:
        o = self.options
        return self.pending or epoch in o.at_epochs or (o.every > 0 and epoch > 1 and (epoch - 1) % o.every == 0)

    def _why_not_deeper(self, depth: int) -> str:
        """Why the net of ``depth`` hidden layers gets no more layers ("" if it may)."""
        o, best = self.options, self.best_by_depth
        if o.max_layers and depth >= o.max_layers:
            return f"target depth {o.max_layers} reached"
        if o.until_no_gain and depth - 1 in best and depth not in best:
            return f"no epoch at {depth} layers was accepted"
        if o.until_no_gain and depth - 1 in best and depth in best and not best[depth] < best[depth - 1]:
            return (f"{depth} layers gave no better dev loss than {depth - 1} "
                    f"({best[depth]:.4f} vs {best[depth - 1]:.4f})")
        return ""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if self.stopped or not self._due(epoch):
            return
        self.pending = False
        model = trainer.model
        dils.check_deepenable(model)
        depth = model.config.dnn.hidden_layers
        o = self.options
        self.stopped = self._why_not_deeper(depth)
        if self.stopped:
            logger.info("dils: no more layers: %s", self.stopped)
            return
        sample = None
        if model.config.dnn.activation != "relu":
            data = trainer.train_set
            sample = dils.sample_last_hidden(model, (data.feats(i) for i in range(len(data))), o.fit_samples)
        new, error = dils.insert_layer(model, sample)
        how = "identity (exact)" if sample is None else \
            f"least squares on {sample.shape[0]} frames, max logit difference {error:.3g}"
        trainer.replace_model(new, f"dils: {depth} -> {depth + 1} hidden layers, {how}")

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        depth = trainer.model.config.dnn.hidden_layers
        row["hidden_layers"] = depth  # kept in the history (and checkpoints), for the table of depths on resume
        loss = float(row["valid_loss"])
        if row.get("decision") == "accepted" and loss < self.best_by_depth.get(depth, float("inf")):
            self.best_by_depth[depth] = loss
            # The best model of each depth, for the WER per depth (kt.sh stage 7 decodes them).
            trainer.save_model_copy(trainer.exp_dir / DEPTHS_DIR / f"depth_{depth}.pt", row)
        if trainer.dist.is_main:
            atomic_write_text(trainer.exp_dir / DEPTHS_DIR / "depths.tsv",
                              dils.depths_table(trainer.history, trainer.metric))
        schedule = trainer.schedule
        if self.options.at_convergence and not self.stopped and schedule.done and \
                schedule.stop_reason.startswith("converged") and not self._why_not_deeper(depth):
            # This depth has converged: deepen before the next epoch and train the deeper net to convergence too.
            lr = trainer.cfg.optim.lr
            schedule.restart(lr)
            trainer.set_lr(lr)
            self.pending = True
            logger.info("dils: %d hidden layers converged (best dev loss %.4f): a layer is inserted before epoch %d, "
                        "the schedule starts over at lr %g", depth, self.best_by_depth.get(depth, float("nan")),
                        epoch + 1, lr)

    def state_dict(self) -> dict:
        return {"best_by_depth": dict(self.best_by_depth), "stopped": self.stopped, "pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.best_by_depth = {int(k): float(v) for k, v in state.get("best_by_depth", {}).items()}
        self.stopped = state.get("stopped", "")
        self.pending = bool(state.get("pending", False))


# ----------------------------------------------------------------------------------------------------- TLI
LAST_TLI_RESULT: tli.TliResult | None = None  # the last tli initialisation's matches and score


@register_initializer("tli")
def tli_initializer(model, source_model, cfg, source_path) -> list[str]:
    """Transfer learning by injection (asrkt.transfer.tli) from a model of any architecture; logs the TLI score
    and keeps the result in :data:`LAST_TLI_RESULT`."""
    global LAST_TLI_RESULT
    if cfg.param:
        raise AsrktError("init.method tli matches tensors itself: init.param mappings are not used with it")
    result = tli.inject(model, source_model)
    LAST_TLI_RESULT = result
    logger.info("tli from %s: %s", source_path, result.summary())
    for m in result.matches:
        logger.debug("tli: %s <- %s (score %.3f, %s)", m.target, m.source, m.score, m.how)
    if not result.matches:
        raise AsrktError(f"{source_path}: init.method tli matched no tensor of the model")
    return [m.target for m in result.matches]


# ------------------------------------------------------------------------------------------------ DBN (RBMs)
LAST_DBN_RESULT: rbm.DbnResult | None = None  # the last dbn initialisation's RBMs and reconstruction-error curves


@register_initializer("dbn", from_data=True, options=rbm.DbnOptions)
def dbn_initializer(model, source_model, cfg, source_path, data: InitData, options: rbm.DbnOptions) -> list[str]:
    """RBM/DBN pre-training (asrkt.transfer.rbm) of a sigmoid DNN's hidden layers on the training features, as
    Kaldi's pretrain_dbn.sh; no checkpoint. Keeps the result (curves) in :data:`LAST_DBN_RESULT`."""
    global LAST_DBN_RESULT
    if cfg.param:
        raise AsrktError("init.method dbn pre-trains on the training data: init.param mappings are not used with it")
    seed = derive_seed(data.seed, "dbn", options.seed)
    result = rbm.train_dbn(model, data.train_set, options, seed, data.device, data.batch.max_frames)
    names = rbm.load_into_dnn(model, result)
    LAST_DBN_RESULT = result
    logger.info("dbn: %s; %.1fs", result.summary(), result.seconds)
    return names


# ----------------------------------------------------------------------------------- discriminative layer-wise
@dataclasses.dataclass
class LayerwiseOptions:
    start_layers: int = 1  # hidden layers of the first net trained (model.dnn.hidden_layers is the final depth)
    epochs_per_layer: int = 1  # training passes at each depth below the final one (Seide et al.: 1)
    lr: float = 0.0  # lr of these passes; 0: optim.lr
    keep_output: bool = False  # keep the trained output layer when a layer is inserted (nnet2) instead of a new one


@register_hook
class LayerwiseHook(EpochHook):
    """Discriminative layer-wise pre-training (asrkt.transfer.layerwise), before the first epoch: nets of
    start_layers, start_layers + 1, ... hidden layers are trained epochs_per_layer passes each on the run's loss,
    each grown from the one before; the run then trains the full-depth net as usual. DNN only."""

    name = "layerwise"
    Options = LayerwiseOptions

    def __init__(self, options=None):
        super().__init__(options)
        o = self.options
        if o.epochs_per_layer < 1 or o.lr < 0:
            raise AsrktError(f"hooks 'layerwise': epochs_per_layer must be >= 1 and lr >= 0, got {o}")
        self.stages: list[dict] = []  # per depth: train and dev loss after its passes

    def on_train_start(self, trainer) -> None:
        o = self.options
        target = trainer.model
        layerwise.check_layerwise(target, o.start_layers)
        depth_final = target.config.dnn.hidden_layers
        lr = o.lr or trainer.cfg.optim.lr
        current = None
        for depth in range(o.start_layers, depth_final):
            current = layerwise.grown(target, current, depth, o.keep_output)
            trainer.replace_model(current, f"layerwise: {depth} of {depth_final} hidden layers")
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
            for epoch in range(1, o.epochs_per_layer + 1):
                train = trainer.train_epoch(f"layerwise-{depth}.{epoch}")
            current = trainer.model
            dev = trainer.validate()
            self.stages.append({"depth": depth, "train_loss": train["stats"].total(), "valid_loss": dev.total()})
            logger.info("layerwise: %d hidden layers after %d pass(es) at lr %g: train loss %.4f, dev loss %.4f",
                        depth, o.epochs_per_layer, lr, self.stages[-1]["train_loss"], dev.total())
        final = layerwise.grown(target, current, depth_final, o.keep_output)
        trainer.replace_model(final, f"layerwise: {depth_final} hidden layers (final depth)")

    def state_dict(self) -> dict:
        return {"stages": [dict(s) for s in self.stages]}

    def load_state_dict(self, state: dict) -> None:
        self.stages = [dict(s) for s in state.get("stages", [])]
