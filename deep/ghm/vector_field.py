"""Conditional vector fields v_θ(x, t | s, a) for geometric horizon models (TD-Flow appendix, Table 5).

Farebrother et al. 2025 (arXiv 2503.09817), appendix and Table 5: the conditioning (s, a) goes through
an MLP, is concatenated with a sinusoidal time embedding passed through a small MLP (Mish), and
modulates every hidden block through FiLM in place of the LayerNorm affine (Perez et al. 2018):
h ← Mish(LN(W h) · (1 + γ(c)) + β(c)). Two bodies:

* ``"mlp"``: a plain stack of FiLM blocks with the widths ``hidden``;
* ``"unet"``: the paper's U-Net-style MLP with hierarchical skips — a down path over ``hidden``, a
  middle block, then an up path that concatenates the matching down activation (1 block per
  stage).

Shapes: x [B, d], t [B], cond [B, c] → velocity [B, d].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fixpoint_rl.envs.checks import check_choice, check_int

__all__ = ["ARCHITECTURES", "FiLMBlock", "SinusoidalTimeEmbedding", "VectorField"]

ARCHITECTURES = ("mlp", "unet")


class SinusoidalTimeEmbedding(nn.Module):
    """[sin(f_i t), cos(f_i t)] with f_i log-spaced in [1, max_frequency]: [B] → [B, dim]."""

    def __init__(self, dim: int, max_frequency: float = 1000.0) -> None:
        super().__init__()
        dim = check_int("time_dim", dim, low=2)
        if dim % 2:
            raise ValueError(f"time_dim must be even, got {dim}")
        frequencies = torch.exp(torch.linspace(0.0, math.log(max_frequency), dim // 2))
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.frequencies.to(t.dtype)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class FiLMBlock(nn.Module):
    """Linear → LayerNorm (no affine) → FiLM(context) → Mish."""

    def __init__(self, width_in: int, width_out: int, context_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width_in, width_out)
        self.norm = nn.LayerNorm(width_out, elementwise_affine=False)
        self.film = nn.Linear(context_dim, 2 * width_out)

    def forward(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(context).chunk(2, dim=-1)
        return nn.functional.mish(self.norm(self.linear(h)) * (1.0 + scale) + shift)


class VectorField(nn.Module):
    """v_θ(x, t | cond): an MLP or U-Net-style MLP with FiLM conditioning on (time, cond).

    Args:
      dim: sample dimension d.
      cond_dim: conditioning dimension c (the (s, a) features).
      hidden: block widths (the paper uses (512, 512, 512)).
      time_dim: sinusoidal embedding size (the paper: 256).
      arch: ``"mlp"`` or ``"unet"``.
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        hidden: tuple[int, ...] = (256, 256, 256),
        time_dim: int = 64,
        arch: str = "mlp",
    ) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, low=1)
        self.cond_dim = check_int("cond_dim", cond_dim, low=1)
        self.arch = check_choice("arch", arch, ARCHITECTURES)
        if not isinstance(hidden, (tuple, list)) or len(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of widths, got {hidden!r}")
        hidden = tuple(check_int(f"hidden[{i}]", w, low=1) for i, w in enumerate(hidden))
        self.hidden = hidden
        width = hidden[0]
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, time_dim), nn.Mish(), nn.Linear(time_dim, time_dim),
        )
        self.cond_embedding = nn.Sequential(
            nn.Linear(cond_dim, width), nn.Mish(), nn.Linear(width, width),
        )
        context = time_dim + width
        widths = (dim, *hidden)
        self.down = nn.ModuleList(
            FiLMBlock(widths[i], widths[i + 1], context) for i in range(len(hidden))
        )
        if arch == "unet":
            self.middle = FiLMBlock(hidden[-1], hidden[-1], context)
            ups = []
            current = hidden[-1]
            for skip in reversed(hidden):
                ups.append(FiLMBlock(current + skip, skip, context))
                current = skip
            self.up = nn.ModuleList(ups)
            self.output = nn.Linear(hidden[0], dim)
        else:
            self.output = nn.Linear(hidden[-1], dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        context = torch.cat([self.time_embedding(t), self.cond_embedding(cond)], dim=-1)
        h = x
        skips = []
        for block in self.down:
            h = block(h, context)
            skips.append(h)
        if self.arch == "unet":
            h = self.middle(h, context)
            for block, skip in zip(self.up, reversed(skips)):
                h = block(torch.cat([h, skip], dim=-1), context)
        return self.output(h)
