"""The acoustic-model interface shared by the DNN teacher and the (B)LSTM student, and frame helpers.

Every model maps padded features ``(B, T, D)`` with per-utterance ``lengths`` to per-frame logits
``(B, T', C)`` at the output frame rate ``T' = ceil(T / subsampling)``. Padding frames beyond an
utterance's length never influence its valid outputs (frames are gathered with indices clamped to the
utterance's own last frame, and LSTMs run on packed sequences). Output frames beyond ``out_lengths`` are
unspecified (hidden units there are zero) and must be masked by the caller.
"""
from __future__ import annotations

import torch
from torch import nn

from asrkt.models.config import ModelConfig
from asrkt.utils.errors import AsrktError


def subsampled_lengths(lengths: torch.Tensor, subsampling: int) -> torch.Tensor:
    """Frame counts after stacking ``subsampling`` frames into one: ceil(n / subsampling)."""
    return torch.div(lengths + (subsampling - 1), subsampling, rounding_mode="floor")


def gather_frames(feats: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = concat_k feats[b, index[b, t, k]]``: (B, T, D) with index (B, T2, K) -> (B, T2, K*D)."""
    B, T, D = feats.shape
    _, T2, K = index.shape
    offsets = torch.arange(B, device=feats.device).view(B, 1, 1) * T
    flat = feats.reshape(B * T, D)
    return flat[(index + offsets).reshape(-1)].reshape(B, T2, K * D)


def clamped_positions(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Broadcast frame positions (T2, K) against each utterance, clamped into [0, length - 1]: (B, T2, K)."""
    last = (lengths - 1).clamp(min=0).view(-1, 1, 1)
    return torch.minimum(positions.clamp(min=0).unsqueeze(0), last)


def stack_frames(feats: torch.Tensor, lengths: torch.Tensor, subsampling: int):
    """Stack ``subsampling`` consecutive frames into one; the last group is completed with the
    utterance's own last frame (never with padding). Returns ``(B, ceil(T/s), s*D)`` and new lengths."""
    if subsampling == 1:
        return feats, lengths
    T = feats.shape[1]
    T2 = -(-T // subsampling)
    pos = (torch.arange(T2, device=feats.device).view(T2, 1) * subsampling
           + torch.arange(subsampling, device=feats.device).view(1, subsampling))
    return gather_frames(feats, clamped_positions(pos, lengths)), subsampled_lengths(lengths, subsampling)


def splice_frames(feats: torch.Tensor, lengths: torch.Tensor, context: int) -> torch.Tensor:
    """Splice ``context`` frames on each side (Kaldi splice-feats); edges replicate the utterance's own
    first/last frame. (B, T, D) -> (B, T, (2*context+1)*D)."""
    if context == 0:
        return feats
    T = feats.shape[1]
    pos = (torch.arange(T, device=feats.device).view(T, 1)
           + torch.arange(-context, context + 1, device=feats.device).view(1, -1))
    return gather_frames(feats, clamped_positions(pos, lengths))


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool, True on frames within each utterance."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class AcousticModel(nn.Module):
    """Base class. Subclasses define ``output_layer`` (nn.Linear), ``hidden_dim`` and ``_hidden_layers``.

    ``forward(feats, lengths) == (output_layer(forward_hidden(...)[0]), out_lengths)``.
    ``hidden_layers_outputs`` gives every hidden layer's output (the last one is what ``forward_hidden``
    returns), for layer-wise pre-training and probabilistic knowledge transfer.
    """

    #: Output index t was produced after seeing inputs up to t + targets_delay (applied inside forward).
    targets_delay: int = 0

    def __init__(self, config: ModelConfig, input_dim: int, num_classes: int):
        super().__init__()
        if input_dim < 1 or num_classes < 2:
            raise AsrktError(f"model needs input_dim >= 1 and num_classes >= 2, got {input_dim}, {num_classes}")
        self.config = config
        self.input_dim = int(input_dim)
        self.num_classes = int(num_classes)
        self.subsampling = int(config.subsampling)
        self.hidden_dim = 0
        self.output_layer: nn.Linear

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frame counts for input frame counts (the same for every model type)."""
        return subsampled_lengths(torch.as_tensor(lengths, dtype=torch.long), self.subsampling)

    def _check_inputs(self, feats: torch.Tensor, lengths) -> torch.Tensor:
        if feats.dim() != 3:
            raise AsrktError(f"model input must be (batch, frames, dim), got shape {tuple(feats.shape)}")
        if feats.shape[2] != self.input_dim:
            raise AsrktError(f"feature dimension {feats.shape[2]} does not match the model's input "
                             f"dimension {self.input_dim}")
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=feats.device)
        if lengths.shape != (feats.shape[0],):
            raise AsrktError(f"lengths must have shape ({feats.shape[0]},), got {tuple(lengths.shape)}")
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > feats.shape[1]):
            raise AsrktError(f"utterance lengths must lie in [1, {feats.shape[1]}] (padded frames), got "
                             f"[{int(lengths.min())}, {int(lengths.max())}]")
        return lengths

    def _hidden_layers(self, feats: torch.Tensor, lengths: torch.Tensor, all_layers: bool):
        """Return (list of per-layer outputs (B, T', H_l), out_lengths); with ``all_layers=False`` the list
        may hold only the last layer."""
        raise NotImplementedError

    def hidden_layers_outputs(self, feats: torch.Tensor, lengths) -> list[torch.Tensor]:
        """Each hidden layer's output (B, T', H_l), input side first; the last equals ``forward_hidden``."""
        outs, _ = self._hidden_layers(feats, self._check_inputs(feats, lengths), all_layers=True)
        return outs

    def forward_hidden(self, feats: torch.Tensor, lengths):
        """(hidden (B, T', hidden_dim), out_lengths (B,)): the input of ``output_layer``."""
        in_device = lengths.device if isinstance(lengths, torch.Tensor) else torch.device("cpu")
        outs, out_lengths = self._hidden_layers(feats, self._check_inputs(feats, lengths), all_layers=False)
        return outs[-1], out_lengths.to(in_device)

    def forward_with_hidden(self, feats: torch.Tensor, lengths):
        """(logits, out_lengths, every hidden layer's output) from one pass, for losses on hidden states."""
        in_device = lengths.device if isinstance(lengths, torch.Tensor) else torch.device("cpu")
        outs, out_lengths = self._hidden_layers(feats, self._check_inputs(feats, lengths), all_layers=True)
        return self.output_layer(outs[-1]), out_lengths.to(in_device), outs

    def forward(self, feats: torch.Tensor, lengths):
        """(logits (B, T', num_classes), out_lengths (B,) on the device ``lengths`` came on)."""
        hidden, out_lengths = self.forward_hidden(feats, lengths)
        return self.output_layer(hidden), out_lengths

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
