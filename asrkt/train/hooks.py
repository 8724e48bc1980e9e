"""Epoch hooks: how a method changes the run between epochs without editing the training loop.

A hook may replace the model (insert layers, inject weights, freeze parts) through
:meth:`asrkt.train.trainer.Trainer.replace_model`, which moves it to the device and rebuilds the optimizer
at the current learning rate; a training checkpoint stores the model's config, so a resumed run rebuilds the
changed architecture. Hooks are named in the train config (``hooks: [{name: ..., <options>}]``) and run in that
order; a new one is a subclass of :class:`EpochHook` decorated with :func:`register_hook`
(see ``docs/extending.md``).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from asrkt.utils.config import from_dict
from asrkt.utils.registry import lookup_spec


@dataclasses.dataclass
class NoOptions:
    pass


class EpochHook:
    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    def on_train_start(self, trainer) -> None:
        """After set-up (and initialisation), before the initial dev pass; not called again on resume."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        """Before epoch ``epoch`` trains (the snapshot a rejected epoch returns to is taken after this)."""

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        """After the dev pass and the schedule's decision; ``row`` is the epoch's summary row."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


_HOOKS: dict[str, type[EpochHook]] = {}


def register_hook(cls: type[EpochHook]) -> type[EpochHook]:
    if not cls.name:
        raise TypeError(f"{cls.__name__} must set a name")
    _HOOKS[cls.name] = cls
    return cls


def build_hook(spec: dict) -> EpochHook:
    name, cls, options = lookup_spec(spec, _HOOKS, "hooks", "epoch hook")
    return cls(from_dict(cls.Options, options, source=f"hooks '{name}'"))
