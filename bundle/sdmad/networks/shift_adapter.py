"""The Shift Adapter of SD-MAD (paper Eq. 1-2)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "relu": nn.ReLU}


class ShiftAdapter(nn.Module):
    """``h' = lam * h + (1 - lam) * act(W2 act(W1 h))`` on a transformer block's output ``h``.

    W1: D -> D_b and W2: D_b -> D are bias-free (as in MVFA's adapters), so ``lam = 1`` returns ``h`` exactly.

    Args:
        dim: width D of the residual stream.
        bottleneck: D_b; defaults to D // 2.
        activation: "leaky_relu" (MVFA's choice), "gelu" or "relu".
        lam: interpolation weight lambda in [0, 1] kept on the frozen block output.
    """

    def __init__(self, dim: int, bottleneck: int | None = None, activation: str = "leaky_relu", lam: float = 0.9):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation '{activation}' is unknown; use one of {sorted(ACTIVATIONS)}")
        bottleneck = bottleneck or dim // 2
        self.lam = lam
        self.down = nn.Linear(dim, bottleneck, bias=False)
        self.up = nn.Linear(bottleneck, dim, bias=False)
        self.act = ACTIVATIONS[activation]()
        self.bypassed = False  # True: identity (zero-shot CLIP), whatever the weights

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.bypassed:
            return h
        # Computed in the block's dtype (bfloat16 behind a bfloat16 frozen encoder: tensor cores, no float32
        # round trip); the weights stay float32 master weights, which the optimiser updates.
        down, up = self.down.weight.to(h.dtype), self.up.weight.to(h.dtype)
        adapted = self.act(F.linear(self.act(F.linear(h, down)), up))
        return self.lam * h + (1.0 - self.lam) * adapted

    def block_hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        """Forward hook for the adapted block: replaces its output by the adapted one."""
        return self(output)

    def extra_repr(self) -> str:
        return f"lam={self.lam}" + (", bypassed" if self.bypassed else "")
