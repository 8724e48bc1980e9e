"""Feed-forward DNN on spliced frames (the teacher of Tang, Wang et al.)."""
from __future__ import annotations

from torch import nn

from asrkt.models.base import AcousticModel, splice_frames, stack_frames, valid_mask
from asrkt.models.config import ModelConfig

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _norm(kind: str, units: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(units)
    if kind == "layer":
        return nn.LayerNorm(units)
    return nn.Identity()


class DnnModel(AcousticModel):
    """Stack frames (subsampling), splice +-context (edges replicated), then Linear-norm-activation-dropout
    blocks (the top ``dnn.plain_top_layers`` without norm) and the output Linear. Only valid frames go through the MLP, so padding never enters batch
    statistics either."""

    def __init__(self, config: ModelConfig, input_dim: int, num_classes: int):
        super().__init__(config, input_dim, num_classes)
        d = config.dnn
        self.context = d.context
        in_dim = input_dim * self.subsampling * (2 * d.context + 1)
        self.blocks = nn.ModuleList()
        for i in range(d.hidden_layers):
            norm = "none" if i >= d.hidden_layers - d.plain_top_layers else d.norm
            self.blocks.append(nn.Sequential(nn.Linear(in_dim if i == 0 else d.hidden_units, d.hidden_units),
                                             _norm(norm, d.hidden_units), _ACTIVATIONS[d.activation]()))
        self.dropout = nn.Dropout(d.dropout)
        self.hidden_dim = d.hidden_units
        self.output_layer = nn.Linear(d.hidden_units, num_classes)

    def input_frames(self, feats, lengths):
        """The first hidden layer's input: ``(valid frames (N, spliced dim), mask (B, T'), out_lengths)`` of stacked
        and spliced frames (what layer-wise pre-training, e.g. asrkt.transfer.rbm, trains the first layer on)."""
        x, out_lengths = stack_frames(feats, lengths, self.subsampling)
        x = splice_frames(x, out_lengths, self.context)
        mask = valid_mask(out_lengths, x.shape[1])
        return x[mask], mask, out_lengths

    def _hidden_layers(self, feats, lengths, all_layers):
        h, mask, out_lengths = self.input_frames(feats, lengths)  # (valid frames, spliced dim)
        B, T = mask.shape
        outs = []
        for i, block in enumerate(self.blocks):
            h = self.dropout(block(h))
            if all_layers or i == len(self.blocks) - 1:
                full = h.new_zeros(B, T, h.shape[-1])
                full[mask] = h
                outs.append(full)
        return outs, out_lengths
