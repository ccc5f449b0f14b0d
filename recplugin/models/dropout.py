"""Dropout with a cheaper random mask on CPU: 16 random bits per element, four elements from each 64-bit draw.

PyTorch's CPU dropout draws one Bernoulli sample per element, which took ~28% of a training step of the causal user
tower on 2 cores (`benchmarks/training/dropout.py` measures both); on CUDA its own dropout is used unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LEVELS = 1 << 16  # the drop probability is rounded to a multiple of 1 / 65,536


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each element with probability `p` (rounded to 1 / 65,536) and scale the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    dropped = round(p * LEVELS)
    if dropped >= LEVELS:
        return torch.zeros_like(x)
    count = x.numel()
    bits = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)
    keep = bits.view(torch.int16)[:count].view(x.shape) >= dropped - LEVELS // 2
    return torch.where(keep, x * (LEVELS / (LEVELS - dropped)), torch.zeros((), dtype=x.dtype))


class Dropout(nn.Dropout):
    """`nn.Dropout` drawing its mask with `dropout` (same parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Replace every `nn.Dropout` inside `module` by `Dropout` with the same probability; returns `module`."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, Dropout(child.p))
        else:
            use_fast_dropout(child)
    return module
