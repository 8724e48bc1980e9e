"""Learning-rate schedules that stop by convergence on the dev set: Kaldi nnet1's "newbob"
(steps/nnet/train_scheduler.sh) and early stopping with patience, as one small state machine.

``start(initial_dev_loss)`` once, then ``step(dev_loss, dev_metric)`` after every epoch; the dev loss decides.
``max_epochs`` is a safety cap, not the budget.

newbob (default), with ``loss`` the dev loss of the model training continues from (the last accepted one):

1. accept the new model if its dev loss is lower than ``loss``, or while ``epoch <= keep_lr_epochs``,
   ``epoch <= min_epochs`` or the run is on its starting plateau (below); otherwise reject it: the caller
   restores the parameters of the last accepted model. After an acceptance ``loss`` becomes the new dev loss.
2. rel_impr = (loss_before - loss_after) / loss_before, so a rejected epoch has rel_impr = 0.
3. while ``epoch <= keep_lr_epochs`` or on the plateau nothing else happens;
4. if already halving and rel_impr < end_halving_impr: stop (unless ``epoch <= min_epochs``: then
   nothing else happens this epoch, lr unchanged);
5. if rel_impr < start_halving_impr: start halving;
6. if halving: lr *= halving_factor.

As in nnet1 a rejected epoch therefore starts the halving (lr halved) or, when already halving, ends
training. The final model is the last accepted one.

patience: every epoch is kept (training continues from it); an epoch whose dev loss is not below the best by
``min_delta`` (relative) halves the lr, ``patience`` such epochs in a row stop training; the final model is the
epoch with the lowest dev loss.

The starting plateau: CTC begins by emitting blanks only (dev token error rate ~100 %) while its loss creeps
down, which either rule would take for convergence. While the dev metric (an error rate in %) is still
``>= plateau_metric``, for at most ``plateau_max_epochs`` epochs, the lr is held and the run is not stopped.
"""
from __future__ import annotations

import dataclasses
import math

from asrkt.utils.errors import AsrktError

RULES = ("newbob", "patience")


@dataclasses.dataclass
class ScheduleConfig:
    """Schedule parameters (newbob defaults are nnet1's) and the epoch bounds."""

    rule: str = "newbob"  # newbob | patience
    start_halving_impr: float = 0.01  # newbob
    end_halving_impr: float = 0.001  # newbob
    halving_factor: float = 0.5
    patience: int = 3  # patience: epochs without improvement before stopping
    min_delta: float = 0.001  # patience: relative dev-loss improvement that counts
    min_epochs: int = 1
    max_epochs: int = 100  # safety cap; runs normally stop by convergence long before
    keep_lr_epochs: int = 0  # newbob: first epochs always accepted at the initial lr
    plateau_metric: float = 95.0  # dev error rate (%) at or above which the run is on its starting plateau
    plateau_max_epochs: int = 30  # ... for at most this many epochs; 0 = no plateau rule


NewbobConfig = ScheduleConfig  # the name of earlier versions


@dataclasses.dataclass
class Decision:
    """What the schedule decided after one epoch."""

    epoch: int
    accepted: bool  # training continues from this epoch's model (else: restore the last accepted one)
    best: bool  # this epoch's model is now the final model
    lr_used: float
    next_lr: float
    rel_impr: float
    stop: bool
    reason: str
    plateau: bool = False


class Newbob:
    """Schedule state (either rule; the name is historical)."""

    def __init__(self, cfg: ScheduleConfig, lr: float):
        if cfg.rule not in RULES:
            raise AsrktError(f"schedule.rule must be one of {', '.join(RULES)}, got '{cfg.rule}'")
        if not 0 < cfg.halving_factor < 1:
            raise AsrktError(f"schedule.halving_factor must lie in (0, 1), got {cfg.halving_factor}")
        if cfg.max_epochs < 1 or cfg.min_epochs < 0 or cfg.min_epochs > cfg.max_epochs:
            raise AsrktError(f"need 0 <= schedule.min_epochs <= schedule.max_epochs and max_epochs >= 1, got "
                             f"min_epochs={cfg.min_epochs}, max_epochs={cfg.max_epochs}")
        if cfg.patience < 1 or cfg.min_delta < 0 or cfg.plateau_max_epochs < 0:
            raise AsrktError("schedule.patience must be >= 1, schedule.min_delta and plateau_max_epochs >= 0")
        if not lr > 0:
            raise AsrktError(f"optim.lr must be > 0, got {lr}")
        self.cfg = cfg
        self.lr = float(lr)
        self.best_loss: float | None = None  # newbob: dev loss of the last accepted model; patience: lowest
        self.best_epoch = 0  # 0 = the initial model
        self.epoch = 0  # last finished epoch
        self.halving = False
        self.bad_epochs = 0  # patience: epochs in a row without improvement
        self.done = False
        self.stop_reason = ""

    def start(self, initial_loss: float) -> None:
        if not math.isfinite(initial_loss):
            raise AsrktError(f"the initial model's dev loss is {initial_loss}: check the features, the targets "
                             "and the --init-from model")
        self.best_loss = float(initial_loss)

    def on_plateau(self, epoch: int, metric: float | None) -> bool:
        cfg = self.cfg
        return (metric is not None and math.isfinite(metric) and metric >= cfg.plateau_metric
                and epoch <= cfg.plateau_max_epochs)

    def step(self, loss: float, metric: float | None = None) -> Decision:
        """Record the dev loss (and dev error rate, if any) of the epoch just trained; return the decision."""
        if self.best_loss is None:
            raise RuntimeError("Newbob.start(initial_loss) must be called before step()")
        if self.done:
            raise RuntimeError("Newbob.step() called after the schedule finished")
        self.epoch += 1
        epoch, lr_used, loss_prev = self.epoch, self.lr, self.best_loss
        plateau = self.on_plateau(epoch, metric)
        if self.cfg.rule == "newbob":
            accepted, best, stop, reason = self._newbob(epoch, loss, plateau)
        else:
            accepted, best, stop, reason = self._patience(epoch, loss, plateau)
        rel_impr = (loss_prev - self.best_loss) / abs(loss_prev) if loss_prev != 0 else 0.0
        if not stop and epoch >= self.cfg.max_epochs:
            stop, reason = True, f"reached max_epochs {self.cfg.max_epochs} (before converging)"
        if stop:
            self.done, self.stop_reason = True, reason
        return Decision(epoch=epoch, accepted=accepted, best=best, lr_used=lr_used, next_lr=self.lr,
                        rel_impr=rel_impr, stop=stop, reason=reason, plateau=plateau)

    def _newbob(self, epoch: int, loss: float, plateau: bool):
        cfg = self.cfg
        loss_prev = self.best_loss
        held = epoch <= cfg.keep_lr_epochs or plateau
        accepted = math.isfinite(loss) and (loss < loss_prev or held or epoch <= cfg.min_epochs)
        if accepted:
            self.best_loss, self.best_epoch = float(loss), epoch
        rel_impr = (loss_prev - self.best_loss) / abs(loss_prev) if loss_prev != 0 else 0.0
        stop, reason = False, "accepted" if accepted else "rejected"
        if held:
            if plateau:
                reason += ", on the starting plateau: lr held"
        elif self.halving and rel_impr < cfg.end_halving_impr:
            if epoch > cfg.min_epochs:  # nnet1: "supposed to finish, but we continue as min_iters"
                stop, reason = True, (f"converged: relative improvement {rel_impr:.6f} < end_halving_impr "
                                      f"{cfg.end_halving_impr}")
        else:
            if rel_impr < cfg.start_halving_impr:
                self.halving = True
            if self.halving:
                self.lr *= cfg.halving_factor
        return accepted, accepted, stop, reason

    def _patience(self, epoch: int, loss: float, plateau: bool):
        cfg = self.cfg
        improved = math.isfinite(loss) and loss < self.best_loss * (1.0 - cfg.min_delta)
        if improved:
            self.best_loss, self.best_epoch, self.bad_epochs = float(loss), epoch, 0
            return True, True, False, "improved"
        if plateau:
            return True, False, False, "not improved, on the starting plateau: lr held"
        self.bad_epochs += 1
        self.lr *= cfg.halving_factor
        if self.bad_epochs >= cfg.patience and epoch > cfg.min_epochs:
            return True, False, True, f"converged: no improvement in {self.bad_epochs} epochs (patience)"
        return math.isfinite(loss), False, False, f"not improved ({self.bad_epochs}/{cfg.patience}), lr halved"

    def restart(self, lr: float) -> None:
        """Start over after convergence (for a hook that changes the model, e.g. DILS deepening it): the lr back to
        ``lr``, no halving, not done. The dev loss to beat stays the last accepted model's."""
        self.lr, self.halving, self.bad_epochs, self.done, self.stop_reason = float(lr), False, 0, False, ""

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best_loss": self.best_loss, "best_epoch": self.best_epoch, "epoch": self.epoch,
                "halving": self.halving, "bad_epochs": self.bad_epochs, "done": self.done,
                "stop_reason": self.stop_reason, "config": dataclasses.asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        for key in ("lr", "best_loss", "best_epoch", "epoch", "halving", "done", "stop_reason"):
            setattr(self, key, state[key])
        self.bad_epochs = int(state.get("bad_epochs", 0))
