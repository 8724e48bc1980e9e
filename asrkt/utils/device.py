"""Device choice, in one place: ``auto`` is CUDA when available, else the CPU."""
from __future__ import annotations

import torch

from asrkt.utils.errors import AsrktError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AsrktError(f"unknown device '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AsrktError(f"device '{name}' requested but CUDA is not available")
    return device
