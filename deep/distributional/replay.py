"""Sequence replay: uniform windows of n transitions with the behaviour policy's probabilities.

One ring buffer per environment stream (E streams, capacity C each). Every vector step writes
one entry per stream: (x_t, a_t, r_t, terminal_t, truncated_t, μ(·|x_t), pad_t). Autoreset is
"next step" (gymnasium's default, and ``AtariVectorEnv``'s): after an episode ends, the next
entry holds the *final* observation with ``pad = True`` (its action is ignored by the
environment), and the entry after it starts the new episode. So x_{t+1} of the last transition
of an episode is always the true final observation — what a truncated window bootstraps on.

A window starting at entry i is (x_i..x_{i+n}, a_i..a_{i+n}, r_i..r_{i+n−1}, terminal_i..,
μ(·|x_i)..μ(·|x_{i+n})). It is valid when entries i..i+n are all written and not overwritten,
entry i is not a pad, and no truncation happens in its first n − 1 steps (a truncation in its
last step is fine: the target bootstraps on the final observation). A terminal inside the window
is handled by the target (later entries belong to the next episode and get zero weight).
Sampling is uniform over valid starts (rejection), from a ``numpy`` Generator the trainer owns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SequenceReplay"]


class SequenceReplay:
    """Ring buffers of E streams × C entries; see the module docstring.

    Args:
      num_streams: E (one per vector environment).
      capacity: total entries (split evenly: C = capacity // E per stream).
      obs_shape, obs_dtype: one observation.
      n_actions: A (behaviour rows μ(·|x) are stored whole, so π_α = απ + (1 − α)μ can be formed).
      window: n (transitions per sampled window).
    """

    def __init__(self, num_streams: int, capacity: int, obs_shape: tuple[int, ...],
                 n_actions: int, window: int, obs_dtype=np.uint8):
        if capacity // num_streams < window + 2:
            raise ValueError(
                f"capacity must hold at least window + 2 entries per stream, got {capacity} for "
                f"{num_streams} streams and window {window}"
            )
        self.num_streams = num_streams
        self.per_stream = capacity // num_streams
        self.window = window
        E, C = num_streams, self.per_stream
        self.obs = np.zeros((E, C, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((E, C), dtype=np.int64)
        self.rewards = np.zeros((E, C), dtype=np.float32)
        self.terminals = np.zeros((E, C), dtype=bool)
        self.truncations = np.zeros((E, C), dtype=bool)
        self.pads = np.zeros((E, C), dtype=bool)
        self.behaviour = np.zeros((E, C, n_actions), dtype=np.float32)
        self.written = 0  # entries written per stream (all streams advance together)

    def add(self, obs, actions, rewards, terminals, truncations, behaviour, pads) -> None:
        """Write one entry per stream (arrays with leading dimension E)."""
        k = self.written % self.per_stream
        self.obs[:, k] = obs
        self.actions[:, k] = actions
        self.rewards[:, k] = rewards
        self.terminals[:, k] = terminals
        self.truncations[:, k] = truncations
        self.behaviour[:, k] = behaviour
        self.pads[:, k] = pads
        self.written += 1

    def __len__(self) -> int:
        return self.num_streams * min(self.written, self.per_stream)

    def can_sample(self) -> bool:
        return self.written >= self.window + 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """B uniform valid windows: obs [B, n+1, ...], actions [B, n+1], rewards [B, n],
        terminals [B, n], behaviour [B, n+1, A]."""
        n, C = self.window, self.per_stream
        oldest = max(0, self.written - C)
        newest_start = self.written - n - 1  # entries start..start+n must exist
        if newest_start < oldest:
            raise ValueError("replay holds no complete window yet; call can_sample() first")
        stream = np.empty(batch_size, dtype=np.int64)
        start = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        offsets = np.arange(n + 1)
        for _ in range(1000):
            stream[todo] = rng.integers(0, self.num_streams, size=todo.size)
            start[todo] = rng.integers(oldest, newest_start + 1, size=todo.size)
            index = (start[todo, None] + offsets) % C
            s = stream[todo, None]
            bad = self.pads[s[:, 0], index[:, 0]] | self.truncations[s, index[:, : n - 1]].any(axis=1)
            todo = todo[bad]
            if todo.size == 0:
                break
        else:  # pragma: no cover - only with pathological data (every window truncated)
            raise RuntimeError("could not draw valid replay windows in 1000 rounds")
        index = (start[:, None] + offsets) % C
        s = stream[:, None]
        return {
            "obs": self.obs[s, index],
            "actions": self.actions[s, index],
            "rewards": self.rewards[s, index[:, :n]],
            "terminals": self.terminals[s, index[:, :n]],
            "behaviour": self.behaviour[s, index],
        }

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in
                ("obs", "actions", "rewards", "terminals", "truncations", "pads", "behaviour",
                 "written")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value.copy() if isinstance(value, np.ndarray) else value)
