"""Initialising a model from a checkpoint before training: explicit name mappings and exclusions, strict by
default (ESPnet's ``--init_param src:dst:exclude``), and a registry of initialisers for methods that copy weights
in other ways (weight injection between architectures, layer-wise pre-training).

A mapping ``"src:dst:excl1,excl2"`` copies every checkpoint parameter whose name starts with ``src`` (empty:
all), except those starting with an ``excl`` prefix, to the model parameter named ``dst`` + the rest of the name.
Shapes must agree. ``strict``: without mappings every model parameter must come from the checkpoint and every
checkpoint parameter must be used (the whole model is copied); with mappings every mapped name must exist in the
model. Parameters not initialised keep their random initialisation.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch

from asrkt.utils.config import from_dict
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)

# name -> fn(model, source_model, cfg: InitConfig, source_path) -> list of initialised parameter names
_INITIALIZERS: dict[str, Callable] = {}
# names of the initialisers that train on the training data instead of reading a checkpoint
_FROM_DATA: set[str] = set()
# name -> the dataclass that init.options is checked against (absent: the method takes no options)
_OPTIONS: dict[str, type] = {}


@dataclasses.dataclass
class InitData:
    """What an initialiser registered with ``from_data=True`` gets instead of a source model: the run's training
    features (an :class:`asrkt.data.dataset.UtteranceDataset`, CMVN applied), the device to compute on, the run's
    seed and its batch config (``batch.max_frames`` per utterance batch, as the trainer's loaders)."""

    train_set: object
    device: torch.device
    seed: int
    batch: object


def register_initializer(name: str, from_data: bool = False, options: type | None = None):
    """Decorator: ``init.method: <name>`` in a train config calls the decorated function.

    ``from_data=False`` (weight copying): called as ``fn(model, source_model, cfg, source_path)`` when the run
    has ``--init-from`` / ``init.from_model``. ``from_data=True`` (pre-training on the training data, e.g. the
    DBN): called as ``fn(model, None, cfg, None, data=InitData(...))`` without a checkpoint (one is refused).
    ``options``: a dataclass; ``init.options`` is checked against it (unknown keys refused) and passed as the
    keyword ``options``. Without it, ``init.options`` must be empty."""
    def wrap(fn):
        _INITIALIZERS[name] = fn
        (_FROM_DATA.add if from_data else _FROM_DATA.discard)(name)
        if options is not None:
            _OPTIONS[name] = options
        else:
            _OPTIONS.pop(name, None)
        return fn
    return wrap


def parse_mapping(spec: str) -> tuple[str, str, list[str]]:
    parts = spec.split(":")
    if len(parts) > 3:
        raise AsrktError(f"init.param '{spec}': expected src:dst:exclude1,exclude2")
    parts += [""] * (3 - len(parts))
    src, dst, excl = parts
    return src, dst, [e for e in excl.split(",") if e]


def mapped_state(source: dict[str, torch.Tensor], specs: list[str]) -> dict[str, torch.Tensor]:
    """Destination name -> tensor for the mappings ``specs`` (later mappings win)."""
    out = {}
    for spec in specs:
        src, dst, excl = parse_mapping(spec)
        matched = 0
        for name, value in source.items():
            if name.startswith(src) and not any(name.startswith(e) for e in excl):
                out[dst + name[len(src):]] = value
                matched += 1
        if not matched:
            raise AsrktError(f"init.param '{spec}': no parameter of the checkpoint starts with '{src}' (it has: "
                             f"{', '.join(sorted(source)[:8])}{', ...' if len(source) > 8 else ''})")
    return out


@register_initializer("copy")
def copy_parameters(model: torch.nn.Module, source_model: torch.nn.Module, cfg, source_path) -> list[str]:
    source = source_model.state_dict()
    target = model.state_dict()
    wanted = mapped_state(source, cfg.param) if cfg.param else dict(source)
    problems = []
    unknown = sorted(set(wanted) - set(target))
    if unknown and (cfg.strict or cfg.param):
        problems.append(f"not in the model: {', '.join(unknown[:5])}")
    wanted = {k: v for k, v in wanted.items() if k in target}
    shapes = [f"{k} {tuple(v.shape)} -> {tuple(target[k].shape)}" for k, v in wanted.items()
              if v.shape != target[k].shape]
    if shapes:
        problems.append(f"shapes differ: {'; '.join(shapes[:5])}")
    missing = sorted(set(target) - set(wanted))
    if cfg.strict and not cfg.param and missing:
        problems.append(f"model parameters not in the checkpoint: {', '.join(missing[:5])}")
    if problems:
        raise AsrktError(f"{source_path}: cannot initialise the model from this checkpoint: {' | '.join(problems)}"
                         " (map names with init.param src:dst:exclude, or set init.strict false)")
    target.update(wanted)
    model.load_state_dict(target)
    return sorted(wanted)


def initialize(model: torch.nn.Module, path, cfg, data: InitData | None = None) -> dict:
    """Initialise ``model`` with ``cfg.method``: from the model checkpoint ``path`` (returns its meta), or, for a
    method registered ``from_data``, on ``data`` (returns {}). Nothing happens (returns {}) for a checkpoint method
    without ``path``, or for a data method without ``data`` (a resumed run: its checkpoint holds the weights)."""
    from asrkt.models import load_model

    if cfg.method not in _INITIALIZERS:
        raise AsrktError(f"unknown init.method '{cfg.method}' (known: {', '.join(sorted(_INITIALIZERS))})")
    kwargs = {}
    if cfg.method in _OPTIONS:
        kwargs["options"] = from_dict(_OPTIONS[cfg.method], dict(cfg.options), source=f"init.options ({cfg.method})")
    elif cfg.options:
        raise AsrktError(f"init.options: init.method {cfg.method} takes no options, got "
                         f"{', '.join(sorted(cfg.options))}")
    if cfg.method in _FROM_DATA:
        if path:
            raise AsrktError(f"init.method {cfg.method} pre-trains on the training data: it takes no --init-from "
                             f"or init.from_model (got {path})")
        if data is None:
            return {}
        names = _INITIALIZERS[cfg.method](model, None, cfg, None, data=data, **kwargs)
        logger.info("initialised %d of %d parameter tensors by %s on the training data", len(names),
                    len(model.state_dict()), cfg.method)
        return {}
    if not path:
        return {}
    source_model, meta = load_model(path)
    names = _INITIALIZERS[cfg.method](model, source_model, cfg, path, **kwargs)
    total = len(model.state_dict())
    logger.info("initialised %d of %d parameter tensors from %s (method %s%s)", len(names), total, path,
                cfg.method, f", mappings {cfg.param}" if cfg.param else "")
    return meta
