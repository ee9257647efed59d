"""Categorical Q-networks: a torso, then a linear head to A·M logits, reshaped to [B, A, M].

Torsos (observations are uint8; they are scaled to [0, 1] inside the network):

* ``"minatar_dqn"`` — the official MinAtar DQN network (Young & Tian 2019, arXiv:1903.03176,
  ``examples/dqn.py``): Conv(C→16, 3×3, stride 1, no padding) → ReLU → flatten (16·8·8 = 1024)
  → Linear 128 → ReLU → head.
* ``"dopamine_minatar"`` — Dopamine's ``MinatarRainbowNetwork`` (Castro et al. 2018,
  arXiv:1812.06110; used by Obando-Ceron & Castro 2021, arXiv:2011.14826): Conv(C→16, 3×3,
  'same' padding) → ReLU → flatten (16·10·10 = 1600) → head (no hidden layer).
* ``"nature_cnn"`` — Mnih et al. 2015 (Nature 518): Conv 32 8×8/4 → Conv 64 4×4/2 → Conv 64
  3×3/1 → Linear 512 → head, on 84×84×4 frames (observation /255).
* ``"one_hot"`` — no torso: the observation is a state index (int) and the logits are a table
  [S, A, M] (a "tabular" network, used to check the deep loop against the tabular operators).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TORSOS", "CategoricalQNetwork", "build_network"]

TORSOS = ("minatar_dqn", "dopamine_minatar", "nature_cnn", "one_hot")


class CategoricalQNetwork(nn.Module):
    """obs → logits [B, A, M]; ``probs`` and ``q_values`` (means on the support) as helpers."""

    def __init__(self, torso: nn.Module, features: int, n_actions: int, n_atoms: int,
                 scale: float, atoms: torch.Tensor):
        super().__init__()
        self.torso = torso
        self.head = nn.Linear(features, n_actions * n_atoms)
        self.n_actions = n_actions
        self.n_atoms = n_atoms
        self.scale = scale
        self.register_buffer("atoms", atoms.clone(), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(self.head.weight.dtype) * self.scale
        return self.head(self.torso(x)).view(-1, self.n_actions, self.n_atoms)

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Σ_i p_i z_i per action, [B, A]."""
        return torch.softmax(self.forward(obs), dim=-1) @ self.atoms


class _OneHotTable(nn.Module):
    """logits[s] = table[s]: the observation is a long tensor of state indices [B]."""

    def __init__(self, n_states: int, n_actions: int, n_atoms: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(n_states, n_actions * n_atoms))
        self.n_actions = n_actions
        self.n_atoms = n_atoms

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table[obs.long()].view(-1, self.n_actions, self.n_atoms)


class OneHotQNetwork(CategoricalQNetwork):
    def __init__(self, n_states: int, n_actions: int, n_atoms: int, atoms: torch.Tensor):
        nn.Module.__init__(self)
        self.table = _OneHotTable(n_states, n_actions, n_atoms)
        self.n_actions = n_actions
        self.n_atoms = n_atoms
        self.register_buffer("atoms", atoms.clone(), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table(obs)


def build_network(torso: str, obs_shape: tuple[int, ...], n_actions: int, atoms: torch.Tensor,
                  *, n_states: int | None = None) -> CategoricalQNetwork:
    """A categorical Q-network with the named torso (weights from the global torch RNG).

    Args:
      torso: one of :data:`TORSOS`.
      obs_shape: (C, H, W) of one observation (ignored by ``one_hot``).
      n_actions: A.  atoms: [M] support (float tensor; its dtype is the network's dtype).
      n_states: S, for ``one_hot`` only.
    """
    m = int(atoms.shape[0])
    if torso == "one_hot":
        if n_states is None or n_states < 1:
            raise ValueError(f"n_states must be a positive int for torso 'one_hot', got {n_states!r}")
        return OneHotQNetwork(n_states, n_actions, m, atoms).to(atoms.dtype)
    if len(obs_shape) != 3:
        raise ValueError(f"obs_shape must be (C, H, W) for torso {torso!r}, got {obs_shape!r}")
    c, h, w = obs_shape
    if torso == "minatar_dqn":
        body = nn.Sequential(nn.Conv2d(c, 16, 3, stride=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(16 * (h - 2) * (w - 2), 128), nn.ReLU())
        features, scale = 128, 1.0
    elif torso == "dopamine_minatar":
        body = nn.Sequential(nn.Conv2d(c, 16, 3, stride=1, padding=1), nn.ReLU(), nn.Flatten())
        features, scale = 16 * h * w, 1.0
    elif torso == "nature_cnn":
        body = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
        )
        with torch.no_grad():
            flat = body(torch.zeros(1, c, h, w)).shape[1]
        body = nn.Sequential(body, nn.Linear(flat, 512), nn.ReLU())
        features, scale = 512, 1.0 / 255.0
    else:
        raise ValueError(f"torso must be one of {TORSOS}, got {torso!r}")
    return CategoricalQNetwork(body, features, n_actions, m, scale, atoms).to(atoms.dtype)
