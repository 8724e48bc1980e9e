"""The checkpoints of one exp folder: ``checkpoints/epoch_<n>.pt`` (everything to resume: model, optimizer,
schedule, hooks, RNG states, summary rows), ``checkpoints/epoch_<n>.model.pt`` (model only, for chosen epochs,
:func:`asrkt.models.save_checkpoint`) and ``final.pt`` (a symlink to the chosen epoch's model file).

``keep`` bounds both kinds: the newest ``keep`` of each stay, and the chosen (best) epoch's model file is never
removed. Every file is written under a temporary name and renamed.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from asrkt.models import save_checkpoint
from asrkt.utils.atomic import atomic_path

logger = logging.getLogger(__name__)


class Checkpoints:
    def __init__(self, exp_dir, keep: int):
        self.exp_dir = Path(exp_dir)
        self.dir = self.exp_dir / "checkpoints"
        self.keep = keep

    def path(self, epoch: int) -> Path:
        return self.dir / f"epoch_{epoch}.pt"

    def model_path(self, epoch: int) -> Path:
        return self.dir / f"epoch_{epoch}.model.pt"

    def _list(self, pattern: str) -> list[tuple[int, Path]]:
        found = []
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                m = re.fullmatch(pattern, p.name)
                if m:
                    found.append((int(m.group(1)), p))
        return sorted(found)

    def epochs(self) -> list[tuple[int, Path]]:
        """The full training checkpoints, oldest first."""
        return self._list(r"epoch_(\d+)\.pt")

    def save(self, epoch: int, state: dict) -> None:
        with atomic_path(self.path(epoch)) as tmp:
            torch.save(state, tmp)
        if self.keep > 0:
            for _, p in self.epochs()[:-self.keep]:
                p.unlink(missing_ok=True)

    def save_model(self, epoch: int, model, extra: dict) -> None:
        save_checkpoint(self.model_path(epoch), model, extra=extra)

    def prune_models(self, best_epoch: int) -> None:
        """Keep the newest ``keep`` model files and the best one."""
        if self.keep <= 0:
            return
        models = self._list(r"epoch_(\d+)\.model\.pt")
        for epoch, p in models[:-self.keep]:
            if epoch != best_epoch:
                p.unlink(missing_ok=True)

    def link_final(self, epoch: int) -> None:
        final = self.exp_dir / "final.pt"
        tmp = self.exp_dir / f".final.pt.tmp{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(self.model_path(epoch), self.exp_dir), tmp)
        os.replace(tmp, final)

    def load_latest(self):
        """``(epoch, path, state)`` of the newest readable checkpoint, or None."""
        for epoch, path in reversed(self.epochs()):
            try:
                return epoch, path, torch.load(path, map_location="cpu", weights_only=False)
            except Exception as e:  # a damaged file: fall back to the previous checkpoint
                logger.warning("%s: unreadable (%s), trying an older checkpoint", path, e)
        return None
