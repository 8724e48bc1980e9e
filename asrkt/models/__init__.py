"""Acoustic models: the DNN teacher and the (B)LSTM student behind one interface.

>>> model = build_model(ModelConfig(type="dnn"), input_dim=40, num_classes=30)
>>> logits, out_lengths = model(feats, lengths)          # (B, T', C), (B,)
>>> save_checkpoint("exp/x/final.pt", model, extra={"epoch": 3})
>>> model, meta = load_model("exp/x/final.pt")           # meta == {"epoch": 3}
"""
from __future__ import annotations

from pathlib import Path

import torch

from asrkt.models.base import AcousticModel, splice_frames, stack_frames, subsampled_lengths
from asrkt.models.config import DnnConfig, LstmConfig, ModelConfig, check_model_config
from asrkt.models.dnn import DnnModel
from asrkt.models.lstm import LstmModel
from asrkt.utils.atomic import atomic_path
from asrkt.utils.config import from_dict, to_dict
from asrkt.utils.errors import AsrktError

__all__ = ["AcousticModel", "DnnConfig", "DnnModel", "LstmConfig", "LstmModel", "ModelConfig", "build_model",
           "describe", "load_model", "register_model", "save_checkpoint", "splice_frames", "stack_frames",
           "subsampled_lengths"]

CHECKPOINT_FORMAT = "asrkt-acoustic-model"
CHECKPOINT_VERSION = 1


_MODELS: dict[str, type[AcousticModel]] = {"dnn": DnnModel, "lstm": LstmModel}


def register_model(name: str):
    """Class decorator: ``model.type: <name>`` builds the decorated :class:`AcousticModel` subclass, which reads
    its options from ``model.options`` (see ``docs/extending.md``)."""
    def wrap(cls):
        if not (isinstance(cls, type) and issubclass(cls, AcousticModel)):
            raise TypeError(f"{cls!r} is not an AcousticModel subclass")
        _MODELS[name] = cls
        return cls
    return wrap


def build_model(cfg: ModelConfig, input_dim: int, num_classes: int) -> AcousticModel:
    """Build the model ``cfg.type`` names; AsrktError on an invalid config."""
    if cfg.type not in _MODELS:
        raise AsrktError(f"model config: 'type' must be one of {', '.join(sorted(_MODELS))}, got {cfg.type!r}")
    check_model_config(cfg)
    return _MODELS[cfg.type](cfg, input_dim, num_classes)


def _unwrap(model):
    """The plain model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, AcousticModel):
            model = model.module
        else:
            return model


def save_checkpoint(path, model: AcousticModel, extra: dict | None = None) -> None:
    """Save the model (config, dimensions, weights) and ``extra`` metadata atomically to ``path``.

    ``extra`` must hold only plain Python values and tensors (it is read back with ``weights_only``).
    """
    model = _unwrap(model)
    if not isinstance(model, AcousticModel):
        raise AsrktError(f"{path}: can only save asrkt acoustic models, got {type(model).__name__}")
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": to_dict(model.config),
        "input_dim": model.input_dim,
        "num_classes": model.num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_model(path, map_location="cpu") -> tuple[AcousticModel, dict]:
    """Rebuild a model saved by :func:`save_checkpoint`: returns ``(model, meta)``, ``meta`` being the
    ``extra`` dict it was saved with. The model is in eval mode. AsrktError naming ``path`` if the file is
    missing, unreadable, not an asrkt checkpoint, or its weights do not fit its config."""
    path = Path(path)
    if not path.is_file():
        raise AsrktError(f"{path}: model checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt/foreign file; all mean the same here
        raise AsrktError(f"{path}: not a readable model checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise AsrktError(f"{path}: not an asrkt model checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise AsrktError(f"{path}: checkpoint version {state.get('version')} is not supported "
                         f"(this asrkt reads version {CHECKPOINT_VERSION})")
    cfg = from_dict(ModelConfig, state["model_config"], source=f"{path} (model config)")
    model = build_model(cfg, state["input_dim"], state["num_classes"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise AsrktError(f"{path}: weights do not match the saved model config: {e}") from None
    model.to(map_location if map_location is not None else "cpu")
    model.eval()
    return model, dict(state.get("extra") or {})


def describe(model: AcousticModel) -> str:
    """One line: type, layers, sizes, subsampling, delay and parameter count."""
    model = _unwrap(model)
    cfg = model.config
    if cfg.type not in ("dnn", "lstm"):
        body = f"{cfg.type}: {cfg.options}"
    elif cfg.type == "dnn":
        d = cfg.dnn
        body = (f"dnn: {d.hidden_layers} x {d.hidden_units} {d.activation}, context +-{d.context}, "
                f"norm {d.norm}, dropout {d.dropout}")
    else:
        m = cfg.lstm
        kind = "blstm" if m.bidirectional else "lstm"
        proj = f", projection {m.projection}" if m.projection else ""
        skip = f", frame_skip {m.frame_skip}" if m.frame_skip > 1 else ""
        body = (f"{kind}: {m.num_layers} x {m.cells} cells{proj}, targets_delay {model.targets_delay}{skip}, "
                f"dropout {m.dropout}")
    return (f"{body}, subsampling {model.subsampling}, input {model.input_dim}, {model.num_classes} classes, "
            f"{model.num_params() / 1e6:.2f}M params")
