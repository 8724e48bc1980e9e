"""Acoustic-model configs (nested dataclasses, resolved by :mod:`asrkt.utils.config`).

``subsampling`` is shared by every model type on purpose: a teacher and its student must use the same
value so that the teacher's dumped posteriors line up frame by frame with the student's outputs.
"""
from __future__ import annotations

import dataclasses

from asrkt.utils.errors import AsrktError

ACTIVATIONS = ("relu", "sigmoid", "tanh")
NORMS = ("batch", "layer", "none")
MODEL_TYPES = ("dnn", "lstm")  # the built-in ones; asrkt.models.register_model adds more


@dataclasses.dataclass
class DnnConfig:
    # Frames of context on each side (splicing; the utterance's edge frames are replicated). Counted at
    # the model's input rate, i.e. after frame stacking when subsampling > 1.
    context: int = 5
    hidden_layers: int = 4
    hidden_units: int = 512
    activation: str = "relu"
    dropout: float = 0.1
    # "layer" by default: unlike batch norm it behaves the same in training and evaluation and for any
    # batch composition, which keeps dumped teacher posteriors independent of how utterances were batched.
    norm: str = "layer"
    # The top this-many hidden blocks have no norm layer (Linear-activation): those inserted by depth-incremental
    # learning (asrkt.transfer.dils), which an identity initialisation keeps exact only without a norm.
    plain_top_layers: int = 0


@dataclasses.dataclass
class LstmConfig:
    num_layers: int = 3
    cells: int = 256
    projection: int = 0  # LSTMP (nn.LSTM proj_size); 0 = no projection
    bidirectional: bool = False
    # Unidirectional only: output t is emitted after seeing input t + targets_delay (Kaldi nnet1 used 5).
    targets_delay: int = 5
    dropout: float = 0.1
    # The LSTM steps once per frame_skip input frames (stacked) and a linear layer unstacks each step into
    # frame_skip outputs, so the output rate stays the input rate (model.subsampling 1) at 1/frame_skip of the
    # recurrent cost: frame skipping (Miao et al., ICASSP 2016) with a learned output per frame instead of
    # copied labels. For frame-level targets (hybrid) on few cores. targets_delay then counts input frames,
    # rounded up to whole steps.
    frame_skip: int = 1


@dataclasses.dataclass
class ModelConfig:
    type: str = "lstm"  # "dnn" | "lstm" | a type added with asrkt.models.register_model
    # Stack this many consecutive frames into one: the output frame rate is the input rate / subsampling.
    subsampling: int = 1
    dnn: DnnConfig = dataclasses.field(default_factory=DnnConfig)
    lstm: LstmConfig = dataclasses.field(default_factory=LstmConfig)
    # Options of a registered model type other than dnn/lstm (checked against that type's Options dataclass).
    options: dict = dataclasses.field(default_factory=dict)


def check_model_config(cfg: ModelConfig) -> None:
    """Raise AsrktError on values no model can be built from (named with their dotted key)."""
    def need(cond, key, value, what):
        if not cond:
            raise AsrktError(f"model config: '{key}' must be {what}, got {value!r}")

    need(cfg.subsampling >= 1, "subsampling", cfg.subsampling, ">= 1")
    if cfg.type not in MODEL_TYPES:
        return  # a registered type checks its own options
    if cfg.type == "dnn":
        d = cfg.dnn
        need(d.context >= 0, "dnn.context", d.context, ">= 0")
        need(d.hidden_layers >= 1, "dnn.hidden_layers", d.hidden_layers, ">= 1")
        need(d.hidden_units >= 1, "dnn.hidden_units", d.hidden_units, ">= 1")
        need(d.activation in ACTIVATIONS, "dnn.activation", d.activation, " or ".join(ACTIVATIONS))
        need(d.norm in NORMS, "dnn.norm", d.norm, " or ".join(NORMS))
        need(0 <= d.plain_top_layers <= d.hidden_layers, "dnn.plain_top_layers", d.plain_top_layers,
             f"in [0, dnn.hidden_layers ({d.hidden_layers})]")
        need(0.0 <= d.dropout < 1.0, "dnn.dropout", d.dropout, "in [0, 1)")
    else:
        m = cfg.lstm
        need(m.num_layers >= 1, "lstm.num_layers", m.num_layers, ">= 1")
        need(m.cells >= 1, "lstm.cells", m.cells, ">= 1")
        need(0 <= m.projection < m.cells, "lstm.projection", m.projection,
             f"0 (none) or smaller than lstm.cells ({m.cells})")
        need(m.targets_delay >= 0, "lstm.targets_delay", m.targets_delay, ">= 0")
        need(m.frame_skip >= 1, "lstm.frame_skip", m.frame_skip, ">= 1")
        need(m.frame_skip == 1 or cfg.subsampling == 1, "lstm.frame_skip", m.frame_skip,
             f"1 when subsampling is {cfg.subsampling} (frame skipping keeps the input rate; subsampling lowers it)")
        need(0.0 <= m.dropout < 1.0, "lstm.dropout", m.dropout, "in [0, 1)")
