"""Training targets and objectives: tokenizers (text <-> class ids) and the objective components.

An objective (:class:`asrkt.targets.objective.Objective`) says what targets a data dir yields, the model's
output size, its loss, its dev metric and its stage-7 decoder; :func:`build_objective` builds one by name.
Registered here: ``ctc`` (token sequences from ``text``) and ``frame_ce`` (frame-level class ids from
alignments). A new one is a module with a subclass decorated by :func:`register_objective` (see
``docs/extending.md``); nothing in the trainer changes.
"""
from __future__ import annotations

from asrkt.targets.ctc import CtcObjective, min_ctc_frames
from asrkt.targets.frames import FrameCeObjective
from asrkt.targets.objective import (Objective, ObjectiveStats, TargetSource, build_objective, objective_names,
                                     register_objective)
from asrkt.targets.tokenizer import Tokenizer, read_tokens, train_tokenizer

__all__ = ["CtcObjective", "FrameCeObjective", "Objective", "ObjectiveStats", "TargetSource", "Tokenizer", "build_objective",
           "min_ctc_frames", "objective_names", "read_tokens", "register_objective", "train_tokenizer"]
