"""Kaldi nnet1 "newbob" learning-rate schedule (steps/nnet/train_scheduler.sh), as a small state machine.

Per epoch, with ``loss`` the dev loss of the model training continues from (the last accepted one):

1. accept the new model if its dev loss is lower than ``loss``, or while ``epoch <= keep_lr_epochs`` or
   ``epoch <= min_epochs``; otherwise reject it: the caller restores the parameters of the last accepted
   model. After an acceptance ``loss`` becomes the new dev loss.
2. rel_impr = (loss_before - loss_after) / loss_before, so a rejected epoch has rel_impr = 0.
3. while ``epoch <= keep_lr_epochs`` nothing else happens;
4. if already halving and rel_impr < end_halving_impr: stop (unless ``epoch <= min_epochs``: then
   nothing else happens this epoch, lr unchanged);
5. if rel_impr < start_halving_impr: start halving;
6. if halving: lr *= halving_factor.
Training also stops after ``max_epochs``.

As in nnet1 a rejected epoch therefore starts the halving (lr halved) or, when already halving, ends
training. The dev loss of the initial model (before epoch 1) is the first reference, as nnet1's initial
cross-validation pass.
"""
from __future__ import annotations

import dataclasses
import math

from asrkt.utils.errors import AsrktError


@dataclasses.dataclass
class NewbobConfig:
    """Newbob parameters (defaults are nnet1's) and the epoch bounds."""

    start_halving_impr: float = 0.01
    end_halving_impr: float = 0.001
    halving_factor: float = 0.5
    min_epochs: int = 1
    max_epochs: int = 20
    keep_lr_epochs: int = 0


@dataclasses.dataclass
class Decision:
    """What the schedule decided after one epoch."""

    epoch: int
    accepted: bool
    lr_used: float
    next_lr: float
    rel_impr: float
    stop: bool
    reason: str


class Newbob:
    """Newbob schedule state: ``start(initial_dev_loss)`` once, then ``step(dev_loss)`` after every epoch."""

    def __init__(self, cfg: NewbobConfig, lr: float):
        if not 0 < cfg.halving_factor < 1:
            raise AsrktError(f"schedule.halving_factor must lie in (0, 1), got {cfg.halving_factor}")
        if cfg.max_epochs < 1 or cfg.min_epochs < 0 or cfg.min_epochs > cfg.max_epochs:
            raise AsrktError(f"need 0 <= schedule.min_epochs <= schedule.max_epochs and max_epochs >= 1, got "
                             f"min_epochs={cfg.min_epochs}, max_epochs={cfg.max_epochs}")
        if not lr > 0:
            raise AsrktError(f"optim.lr must be > 0, got {lr}")
        self.cfg = cfg
        self.lr = float(lr)
        self.best_loss: float | None = None  # dev loss of the last accepted model
        self.best_epoch = 0  # 0 = the initial model
        self.epoch = 0  # last finished epoch
        self.halving = False
        self.done = False
        self.stop_reason = ""

    def start(self, initial_loss: float) -> None:
        if not math.isfinite(initial_loss):
            raise AsrktError(f"the initial model's dev loss is {initial_loss}: check the features, the targets "
                             "and the --init-from model")
        self.best_loss = float(initial_loss)

    def step(self, loss: float) -> Decision:
        """Record the dev loss of the epoch just trained; return the accept/lr/stop decision."""
        if self.best_loss is None:
            raise RuntimeError("Newbob.start(initial_loss) must be called before step()")
        if self.done:
            raise RuntimeError("Newbob.step() called after the schedule finished")
        cfg = self.cfg
        self.epoch += 1
        epoch, lr_used = self.epoch, self.lr
        loss_prev = self.best_loss
        finite = math.isfinite(loss)
        accepted = finite and (loss < loss_prev or epoch <= cfg.keep_lr_epochs or epoch <= cfg.min_epochs)
        if accepted:
            self.best_loss, self.best_epoch = float(loss), epoch
        rel_impr = (loss_prev - self.best_loss) / abs(loss_prev) if loss_prev != 0 else 0.0
        stop, reason = False, "accepted" if accepted else "rejected"
        if epoch > cfg.keep_lr_epochs:
            if self.halving and rel_impr < cfg.end_halving_impr:
                if epoch > cfg.min_epochs:  # nnet1: "supposed to finish, but we continue as min_iters"
                    stop, reason = True, (f"relative improvement {rel_impr:.6f} < end_halving_impr "
                                          f"{cfg.end_halving_impr}")
            else:
                if rel_impr < cfg.start_halving_impr:
                    self.halving = True
                if self.halving:
                    self.lr *= cfg.halving_factor
        if not stop and epoch >= cfg.max_epochs:
            stop, reason = True, f"reached max_epochs {cfg.max_epochs}"
        if stop:
            self.done, self.stop_reason = True, reason
        return Decision(epoch=epoch, accepted=accepted, lr_used=lr_used, next_lr=self.lr, rel_impr=rel_impr,
                        stop=stop, reason=reason)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best_loss": self.best_loss, "best_epoch": self.best_epoch, "epoch": self.epoch,
                "halving": self.halving, "done": self.done, "stop_reason": self.stop_reason,
                "config": dataclasses.asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        for key in ("lr", "best_loss", "best_epoch", "epoch", "halving", "done", "stop_reason"):
            setattr(self, key, state[key])
