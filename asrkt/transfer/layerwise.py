"""Discriminative layer-wise pre-training (Seide et al. 2011, "Feature engineering in context-dependent deep neural
networks"; Kaldi nnet2/nnet3's layer-wise discriminative training): train a net with one hidden layer on the
run's own loss, insert the next hidden layer below the output layer, train again, and so on up to the target
depth, which is then trained to convergence.

The target net is the model the run builds (``model.dnn.hidden_layers`` is the final depth, so checkpoints and
resumed runs need nothing special); the shallower nets are cut from it: a net of depth ``d`` has the target's
first ``d`` blocks and, at its first training, the target's initial output layer. Growing from depth ``d`` keeps
the trained blocks, adds block ``d`` with the target's initial (random, seeded) weights, and, as Seide and Kaldi
nnet3 do, starts a new output layer (the target's initial one); ``keep_output`` keeps the trained one instead (as
Kaldi nnet2's add-layers-period). Block ``i`` has the same norm layout as in the target at every depth.

DNN only: an (B)LSTM student gets a layer-wise pre-trained teacher instead (pre-train the DNN teacher, transfer
by KT). The epoch hook ``layerwise`` (``hooks: [{name: layerwise, epochs_per_layer: 1}]``) is registered in
:mod:`asrkt.train.methods`; this module holds the model surgery.
"""
from __future__ import annotations

import copy
import dataclasses

import torch

from asrkt.models import DnnModel, build_model
from asrkt.utils.errors import AsrktError


def check_layerwise(model, start_layers: int) -> None:
    if not isinstance(model, DnnModel):
        raise AsrktError(f"hooks 'layerwise' grows a DNN (model.type dnn) layer by layer, not model.type "
                         f"{model.config.type}: for an (B)LSTM student, pre-train the DNN teacher layer-wise "
                         "(egs/digits/conf/teacher_layerwise.yaml) and transfer to the student by KT")
    depth = model.config.dnn.hidden_layers
    if not 1 <= start_layers < depth:
        raise AsrktError(f"hooks 'layerwise': start_layers must lie in [1, model.dnn.hidden_layers - 1] = "
                         f"[1, {depth - 1}] (model.dnn.hidden_layers is the final depth), got {start_layers}")


def depth_config(config, depth: int):
    """The model config with ``depth`` hidden layers, block ``i`` with the same norm layout as in ``config``."""
    d = config.dnn
    normed = d.hidden_layers - d.plain_top_layers  # blocks 0 .. normed-1 have the norm layer
    dnn = dataclasses.replace(d, hidden_layers=depth, plain_top_layers=max(0, depth - normed))
    return dataclasses.replace(config, dnn=dnn)


@torch.no_grad()
def grown(target: DnnModel, current: DnnModel | None, depth: int, keep_output: bool = False) -> DnnModel:
    """The net of ``depth`` hidden layers: blocks below ``current``'s depth (and, with ``keep_output``, the output
    layer) from ``current``, everything else from ``target``'s present weights. ``current=None``: cut from
    ``target`` alone."""
    new = build_model(depth_config(target.config, depth), target.input_dim, target.num_classes)
    state = new.state_dict()
    fresh = target.state_dict()
    trained = current.state_dict() if current is not None else {}
    have = current.config.dnn.hidden_layers if current is not None else 0
    for name in state:
        block = int(name.split(".")[1]) if name.startswith("blocks.") else None
        if block is not None and block < have:
            source = trained
        elif block is None and keep_output and current is not None:
            source = trained
        else:
            source = fresh
        state[name] = copy.deepcopy(source[name])
    new.load_state_dict(state)
    new.train(target.training)
    return new
