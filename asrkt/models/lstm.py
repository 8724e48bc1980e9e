"""(B)LSTM(P) acoustic model (the student), on packed sequences so padding never leaks into valid frames."""
from __future__ import annotations

import torch
from torch import nn

from asrkt.models.base import AcousticModel, clamped_positions, gather_frames, stack_frames
from asrkt.models.config import ModelConfig


def reversed_within_lengths(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps, 1) index that reverses each utterance's first ``length`` steps and leaves its padding in place;
    it is its own inverse."""
    t = torch.arange(steps, device=lengths.device).view(1, -1)
    n = lengths.to(t.device).view(-1, 1)
    return torch.where(t < n, n - 1 - t, t).unsqueeze(-1)


class BiLstmLayer(nn.Module):
    """One BLSTM layer as two forward-only LSTMs on the padded batch: ``backward`` reads each utterance reversed
    within its own length, so neither direction reads padding before a valid step, as nn.LSTM(bidirectional=True)
    on a packed batch, which computes the same. Why not that: its backward pass on the CPU is slow over utterances
    of unequal lengths (bench/blstm_layer.py measures both)."""

    def __init__(self, input_size: int, cells: int, projection: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(input_size, cells, batch_first=True, proj_size=projection)
        self.backward_lstm = nn.LSTM(input_size, cells, batch_first=True, proj_size=projection)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        index = reversed_within_lengths(lengths, x.shape[1])
        backward = gather_frames(self.backward_lstm(gather_frames(x, index))[0], index)
        return torch.cat([self.forward_lstm(x)[0], backward], dim=-1)


class LstmModel(AcousticModel):
    """Optional frame stacking, ``num_layers`` LSTM layers (one nn.LSTM each, so every layer's output is
    available for layer-wise transfer), optional projection (LSTMP), dropout after each layer, output Linear.

    targets_delay (unidirectional only): the input is extended by ``d`` copies of the utterance's last
    frame, the LSTM runs over it, and the first ``d`` outputs are dropped, so output t has seen inputs up to
    t + d and the output length equals the input length. Decoding and dumping need nothing special.

    frame_skip k > 1: the LSTM runs over k stacked frames per step and ``unstack`` (Linear H -> k*H) turns each
    step of the last layer back into k frames, so outputs (and the last hidden layer) are at the input rate; the
    lower layers' outputs are repeated k times for layer-wise transfer. The delay is ceil(d / k) steps.
    """

    def __init__(self, config: ModelConfig, input_dim: int, num_classes: int):
        super().__init__(config, input_dim, num_classes)
        m = config.lstm
        self.bidirectional = m.bidirectional
        # A BLSTM sees the whole future already; a delay would only shift its outputs.
        self.frame_skip = m.frame_skip
        self.delay_steps = 0 if m.bidirectional else -(-m.targets_delay // m.frame_skip)
        self.targets_delay = self.delay_steps * m.frame_skip
        out_size = (m.projection or m.cells) * (2 if m.bidirectional else 1)
        in_dim = input_dim * self.subsampling * m.frame_skip
        self.layers = nn.ModuleList(
            BiLstmLayer(in_dim if i == 0 else out_size, m.cells, m.projection) if m.bidirectional
            else nn.LSTM(in_dim if i == 0 else out_size, m.cells, batch_first=True, proj_size=m.projection)
            for i in range(m.num_layers))
        self.dropout = nn.Dropout(m.dropout)
        self.hidden_dim = out_size
        if m.frame_skip > 1:
            self.unstack = nn.Linear(out_size, m.frame_skip * out_size)
        self.output_layer = nn.Linear(out_size, num_classes)

    def _hidden_layers(self, feats, lengths, all_layers):
        outs, out_lengths = self._lstm_layers(feats, lengths, all_layers)
        k = self.frame_skip
        if k == 1:
            return outs, out_lengths
        B, steps, H = outs[-1].shape
        last = self.unstack(outs[-1]).view(B, steps * k, H)
        lower = [o.repeat_interleave(k, dim=1) for o in outs[:-1]]
        T = feats.shape[1]
        return [o[:, :T] for o in lower + [last]], lengths

    def _lstm_layers(self, feats, lengths, all_layers):
        x, out_lengths = stack_frames(feats, lengths, self.subsampling * self.frame_skip)
        T = x.shape[1]
        d = self.delay_steps
        if d:
            x = gather_frames(x, clamped_positions(torch.arange(T + d, device=x.device).view(-1, 1), out_lengths))
        outs = []
        # A forward-only LSTM never looks back from padding into valid frames, so it runs on the padded batch:
        # measured on CPU (torch 2.13, 60 utterances of 150-400 frames, 3 x 256), the backward pass over a packed
        # batch of unequal lengths took 75-90 s, over the padded one about 1 s. A BLSTM layer runs the same way.
        for i, lstm in enumerate(self.layers):
            x = self.dropout(lstm(x, out_lengths) if self.bidirectional else lstm(x)[0])
            if all_layers or i == len(self.layers) - 1:
                outs.append(x[:, d:])
        return outs, out_lengths
