"""(B)LSTM(P) acoustic model (the student), on packed sequences so padding never leaks into valid frames."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asrkt.models.base import AcousticModel, clamped_positions, gather_frames, stack_frames
from asrkt.models.config import ModelConfig


class LstmModel(AcousticModel):
    """Optional frame stacking, ``num_layers`` LSTM layers (one nn.LSTM each, so every layer's output is
    available for layer-wise transfer), optional projection (LSTMP), dropout after each layer, output Linear.

    targets_delay (unidirectional only): the input is extended by ``d`` copies of the utterance's last
    frame, the LSTM runs over it, and the first ``d`` outputs are dropped, so output t has seen inputs up to
    t + d and the output length equals the input length. Decoding and dumping need nothing special.
    """

    def __init__(self, config: ModelConfig, input_dim: int, num_classes: int):
        super().__init__(config, input_dim, num_classes)
        m = config.lstm
        self.bidirectional = m.bidirectional
        # A BLSTM sees the whole future already; a delay would only shift its outputs.
        self.targets_delay = 0 if m.bidirectional else m.targets_delay
        out_size = (m.projection or m.cells) * (2 if m.bidirectional else 1)
        in_dim = input_dim * self.subsampling
        self.layers = nn.ModuleList(
            nn.LSTM(in_dim if i == 0 else out_size, m.cells, batch_first=True, bidirectional=m.bidirectional,
                    proj_size=m.projection)
            for i in range(m.num_layers))
        self.dropout = nn.Dropout(m.dropout)
        self.hidden_dim = out_size
        self.output_layer = nn.Linear(out_size, num_classes)

    def _hidden_layers(self, feats, lengths, all_layers):
        x, out_lengths = stack_frames(feats, lengths, self.subsampling)
        T = x.shape[1]
        d = self.targets_delay
        if d:
            x = gather_frames(x, clamped_positions(torch.arange(T + d, device=x.device).view(-1, 1), out_lengths))
        packed = pack_padded_sequence(x, (out_lengths + d).cpu(), batch_first=True, enforce_sorted=False)
        outs = []
        for i, lstm in enumerate(self.layers):
            packed, _ = lstm(packed)
            packed = packed._replace(data=self.dropout(packed.data))
            if all_layers or i == len(self.layers) - 1:
                out, _ = pad_packed_sequence(packed, batch_first=True, total_length=T + d)
                outs.append(out[:, d:])
        return outs, out_lengths
