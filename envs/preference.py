"""Preference games of Nash Learning from Human Feedback (Munos et al., ICML 2024; arXiv 2312.00886).

A preference game is a symmetric two-player constant-sum game over K responses: each player picks a
response (or a policy over responses) and player 1 wins with probability ``pref[i, j] = P(y_i ≻ y_j)``.
The reference policy μ (``ref``) anchors the KL-regularised game of NLHF §3:

    P_τ(π ≻ π') = P(π ≻ π') − τ·KL_ρ(π ‖ μ) + τ·KL_ρ(π' ‖ μ),

whose unique Nash equilibrium π*_τ solves π*_τ ∝ μ·exp(P(y ≻ π*_τ)/τ) (NLHF Prop. 1). Solvers and
exact oracles live in ``fixpoint_rl.tabular.nash`` and ``fixpoint_rl.tabular.nlhf``.

Shapes: K responses, X contexts (prompts). A game is either single-context (``pref`` [K, K],
``ref`` [K]) or contextual (``pref`` [X, K, K], ``ref`` [X, K], context distribution ρ
``context_weights`` [X], uniform by default).

Library (each takes an optional ``ref``; uniform μ by default):

- :func:`dice` — intransitive dice {2,4,9}, {1,6,8}, {3,5,7} (NLHF App. C.1); Nash = uniform.
- :func:`rock_paper_scissors` — deterministic cyclic preferences; Nash = uniform.
- :func:`three_type_cycle` — three rater types (NLHF §3.2); Nash = (c, b, a) for shares (a, b, c).
- :func:`bradley_terry` — transitive preferences σ(r_i − r_j) from rewards [K] or [X, K].
- :func:`random_game` / :func:`random_contextual_game` — seeded random games of kind
  ``antisymmetric`` (intransitive), ``bradley_terry`` (transitive) or ``mixture`` (half of each).

This module imports numpy only.

Valid range: K ≥ 1 and X ≥ 1 with X·K² within the memory budget, μ with full support, ε ∈
[−2/3, 1/3] for the three-type cycle. Outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .checks import (
    as_float_array,
    as_generator,
    check_choice,
    check_distribution,
    check_int,
    check_scalar,
    check_size_budget,
    describe,
)

__all__ = [
    "GAME_KINDS",
    "PreferenceGame",
    "bradley_terry",
    "dice",
    "random_contextual_game",
    "random_game",
    "rock_paper_scissors",
    "three_type_cycle",
]

# |pref + pref.T − 1| and |diag(pref) − ½| tolerance (the 1e-9): far above float64 rounding
# of any construction used here (≤ 1e-15), far below any modelling mistake.
ANTISYMMETRY_TOLERANCE = 1e-9

#: kinds accepted by :func:`random_game` and :func:`random_contextual_game`.
GAME_KINDS = ("antisymmetric", "bradley_terry", "mixture")


@dataclasses.dataclass(frozen=True, eq=False)
class PreferenceGame:
    """A (possibly contextual) preference game with a reference policy.

    Attributes:
      pref: [K, K] or [X, K, K], ``pref[..., i, j] = P(y_i ≻ y_j | x)``. Entries in [0, 1],
        ``pref + pref.T == 1`` within 1e-9 (so the diagonal is ½), finite.
      ref: μ, [K] (single context) or [X, K] (contextual): a distribution with full support.
      context_weights: ρ, [X], the distribution of contexts (contextual games only; uniform when
        omitted; entries may be zero). ``None`` for single-context games.
      name: a short label used by benchmarks and figures.

    Arrays are copied to float64, C-contiguous and read-only at construction, so a game cannot be
    mutated after validation. Anything invalid raises ``ValueError`` naming the field.

    Valid range: no numeric arguments; pref [K, K] or [X, K, K] in [0, 1] with P + Pᵀ = 1; ref [K]
    (or [X, K]) a distribution with full support; context_weights [X] a distribution or None.
    """

    pref: np.ndarray
    ref: np.ndarray
    context_weights: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        pref = as_float_array("pref", self.pref, ndim=(2, 3), copy=True)
        if pref.shape[-1] != pref.shape[-2] or pref.shape[-1] == 0:
            raise ValueError(f"pref must be square [K, K] or [X, K, K] with K ≥ 1, got shape {pref.shape}")
        if pref.ndim == 3 and pref.shape[0] == 0:
            raise ValueError(f"pref must have at least one context, got shape {pref.shape}")
        if np.any(pref < 0.0) or np.any(pref > 1.0):
            raise ValueError(
                f"pref entries must lie in [0, 1], got range [{float(pref.min())!r}, {float(pref.max())!r}]"
            )
        sym_error = float(np.max(np.abs(pref + np.swapaxes(pref, -1, -2) - 1.0)))
        if sym_error > ANTISYMMETRY_TOLERANCE:
            raise ValueError(
                f"pref must satisfy pref + pref.T == 1 (P(y ≻ y') = 1 − P(y' ≻ y)), "
                f"got a deviation of {sym_error:.3g}"
            )
        diagonal = np.diagonal(pref, axis1=-2, axis2=-1)
        diag_error = float(np.max(np.abs(diagonal - 0.5)))
        if diag_error > ANTISYMMETRY_TOLERANCE:
            raise ValueError(f"pref must have diagonal ½, got a deviation of {diag_error:.3g}")
        K = pref.shape[-1]
        ref_shape = (K,) if pref.ndim == 2 else (pref.shape[0], K)
        ref = check_distribution("ref", self.ref, shape=ref_shape, full_support=True, copy=True)
        if pref.ndim == 3:
            X = pref.shape[0]
            if self.context_weights is None:
                weights = np.full(X, 1.0 / X)
            else:
                weights = check_distribution(
                    "context_weights", self.context_weights, shape=(X,), copy=True
                )
        else:
            if self.context_weights is not None:
                raise ValueError(
                    "context_weights must be None for a single-context game (pref [K, K]), got "
                    f"{describe(self.context_weights)}"
                )
            weights = None
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {describe(self.name)}")
        for array in (pref, ref, weights):
            if array is not None:
                array.flags.writeable = False
        object.__setattr__(self, "pref", pref)
        object.__setattr__(self, "ref", ref)
        object.__setattr__(self, "context_weights", weights)

    # --- shape helpers --------------------------------------------------------------------------
    @property
    def is_contextual(self) -> bool:
        """True for a contextual game (pref [X, K, K])."""
        return self.pref.ndim == 3

    @property
    def n_actions(self) -> int:
        """K, the number of responses."""
        return int(self.pref.shape[-1])

    @property
    def n_contexts(self) -> int:
        """X for a contextual game; 1 for a single-context game."""
        return int(self.pref.shape[0]) if self.is_contextual else 1

    @property
    def payoff(self) -> np.ndarray:
        """The antisymmetric payoff A = pref − ½, [K, K] or [X, K, K] (a fresh array).

        P(y ≻ π) − ½ = (A π)_y, and P(π ≻ π') − ½ = πᵀ A π'.
        """
        return self.pref - 0.5

    @property
    def log_ref(self) -> np.ndarray:
        """log μ, [K] or [X, K] (finite: μ has full support)."""
        return np.log(self.ref)

    # --- derived games --------------------------------------------------------------------------
    def with_ref(self, ref: Any) -> PreferenceGame:
        """The same preferences with another reference policy μ (validated)."""
        return PreferenceGame(self.pref, ref, self.context_weights, self.name)

    def context(self, x: int) -> PreferenceGame:
        """Context ``x`` of a contextual game, as a single-context game."""
        if not self.is_contextual:
            raise ValueError("context() needs a contextual game (pref [X, K, K]), got a single-context game")
        x = check_int("x", x, low=0, high=self.n_contexts - 1)
        return PreferenceGame(self.pref[x], self.ref[x], None, f"{self.name}[{x}]")

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.pref.shape)
        return f"PreferenceGame(name={self.name!r}, pref=[{shape}])"


# --- library ----------------------------------------------------------------------------------


def _uniform_or(ref: Any, K: int) -> Any:
    return np.full(K, 1.0 / K) if ref is None else ref


def _preference_from_dice(faces: np.ndarray) -> np.ndarray:
    """P(die i ≻ die j) = Pr(face of i > face of j) + ½ Pr(tie), by enumerating face pairs."""
    wins = (faces[:, None, :, None] > faces[None, :, None, :]).mean(axis=(2, 3))
    ties = (faces[:, None, :, None] == faces[None, :, None, :]).mean(axis=(2, 3))
    return wins + 0.5 * ties


def dice(ref: Any = None) -> PreferenceGame:
    """Intransitive dice {2,4,9}, {1,6,8}, {3,5,7} (NLHF App. C.1).

    Each die beats the next with probability 5/9 (0 ≻ 1 ≻ 2 ≻ 0), computed here by enumerating the
    9 face pairs. The unregularised Nash equilibrium is uniform.

    Args:
      ref: μ [3]; uniform when omitted.

    Valid range: no numeric arguments; ref a full-support distribution over the 3 dice or None
    (uniform).
    """
    faces = np.array([[2, 4, 9], [1, 6, 8], [3, 5, 7]], dtype=np.float64)
    return PreferenceGame(_preference_from_dice(faces), _uniform_or(ref, 3), name="dice")


def rock_paper_scissors(ref: Any = None) -> PreferenceGame:
    """Rock (0), paper (1), scissors (2): P = 1 for a win, 0 for a loss, ½ for a tie. Nash = uniform.

    Args:
      ref: μ [3]; uniform when omitted.

    Valid range: no numeric arguments; ref a full-support distribution over the 3 actions or None
    (uniform).
    """
    pref = np.full((3, 3), 0.5)
    for winner, loser in ((1, 0), (2, 1), (0, 2)):
        pref[winner, loser] = 1.0
        pref[loser, winner] = 0.0
    return PreferenceGame(pref, _uniform_or(ref, 3), name="rps")


def three_type_cycle(eps: float, ref: Any = None) -> PreferenceGame:
    """Three rater types over three responses (NLHF §3.2).

    Type 1 (share a = 1/3 − ε) prefers y2 ≻ y1; type 2 (share b = 1/3 + ε/2) prefers y1 ≻ y3; type 3
    (share c = 1/3 + ε/2) prefers y3 ≻ y2; every type is indifferent (½) on its other pairs. Hence
    P(y2 ≻ y1) = ½ + a/2, P(y1 ≻ y3) = ½ + b/2, P(y3 ≻ y2) = ½ + c/2, and the unregularised Nash
    equilibrium is π* = (c, b, a) = (1/3 + ε/2, 1/3 + ε/2, 1/3 − ε) (Munos et al. 2024, arXiv 2312.00886, §3.2; it solves
    (P − ½)π* = 0). A Bradley–Terry reward fitted to these preferences ranks y1 first for ε > 0 and
    y2 first for ε < 0 (NLHF §3.2).

    Args:
      eps: ε in [−2/3, 1/3], so that all three shares are in [0, 1] (the paper uses |ε| ≤ 1/3).
      ref: μ [3]; uniform when omitted.

    Valid range: eps in [−2/3, 1/3] (the preference stays in [0, 1]); ref a full-support
    distribution or None.
    """
    eps = check_scalar("eps", eps, low=-2.0 / 3.0, high=1.0 / 3.0)
    a, b, c = 1.0 / 3.0 - eps, 1.0 / 3.0 + eps / 2.0, 1.0 / 3.0 + eps / 2.0
    pref = np.full((3, 3), 0.5)
    for (winner, loser), share in (((1, 0), a), ((0, 2), b), ((2, 1), c)):
        pref[winner, loser] = 0.5 + share / 2.0
        pref[loser, winner] = 0.5 - share / 2.0
    return PreferenceGame(pref, _uniform_or(ref, 3), name=f"three_type_cycle({eps:g})")


def _bradley_terry_matrix(rewards: np.ndarray) -> np.ndarray:
    """σ(r_i − r_j) = ½(1 + tanh((r_i − r_j)/2)); exactly antisymmetric since tanh is odd."""
    diff = rewards[..., :, None] - rewards[..., None, :]
    return 0.5 * (1.0 + np.tanh(0.5 * diff))


def bradley_terry(rewards: Any, ref: Any = None) -> PreferenceGame:
    """Transitive Bradley–Terry preferences P(y_i ≻ y_j) = σ(r_i − r_j).

    Args:
      rewards: [K] (single context) or [X, K] (contextual) finite rewards.
      ref: μ with the shape of ``rewards``; uniform when omitted.

    The unregularised Nash equilibrium is the point mass on argmax r (the Condorcet winner), and
    for a single context the KL-regularised RLHF optimum is μ·exp(r/τ)/Z.

    Valid range: no numeric arguments; rewards [K] finite (any magnitude: P = σ(r_i − r_j) is
    computed stably); ref a full-support distribution or None (uniform).
    """
    r = as_float_array("rewards", rewards, ndim=(1, 2))
    if r.shape[-1] == 0:
        raise ValueError(f"rewards must be non-empty, got shape {r.shape}")
    if ref is None:
        ref = np.full(r.shape, 1.0 / r.shape[-1])
    return PreferenceGame(_bradley_terry_matrix(r), ref, name="bradley_terry")


def _random_preferences(rng: np.random.Generator, X: int, K: int, kind: str) -> np.ndarray:
    """[X, K, K] random preference matrices of the given kind (see :func:`random_game`)."""

    def antisymmetric() -> np.ndarray:
        upper = np.triu(rng.uniform(-0.5, 0.5, size=(X, K, K)), k=1)
        return 0.5 + upper - np.swapaxes(upper, -1, -2)

    def transitive() -> np.ndarray:
        return _bradley_terry_matrix(rng.standard_normal((X, K)))

    if kind == "antisymmetric":
        return antisymmetric()
    if kind == "bradley_terry":
        return transitive()
    return 0.5 * antisymmetric() + 0.5 * transitive()


def _random_ref(rng: np.random.Generator, X: int, K: int, ref: str) -> np.ndarray:
    if ref == "uniform":
        return np.full((X, K), 1.0 / K)
    # Dirichlet(1, …, 1), floored at 1e-3/K then renormalised so that log μ stays moderate.
    mu = rng.dirichlet(np.ones(K), size=X) + 1e-3 / K
    return mu / mu.sum(axis=-1, keepdims=True)


def random_game(K: int, seed: Any = 0, kind: str = "mixture", ref: str = "uniform") -> PreferenceGame:
    """A seeded random single-context preference game.

    Kinds:
      ``antisymmetric``: pref = ½ + U − Uᵀ with U strictly upper triangular, entries U(−½, ½):
        generic intransitive preferences (the Nash equilibrium is mixed, with support ≈ K/2).
      ``bradley_terry``: pref = σ(r_i − r_j) with r ~ N(0, 1): transitive; Nash = e_{argmax r}.
      ``mixture``: the average of one matrix of each kind (a convex combination of preference
        matrices is one): partly transitive, partly cyclic.

    Args:
      K: number of responses, ≥ 1 (a K² float64 matrix must fit in memory: K ≲ 16000).
      seed: int or ``np.random.Generator``; the same seed gives the same game.
      kind: one of :data:`GAME_KINDS`.
      ref: ``"uniform"`` (μ uniform) or ``"dirichlet"`` (μ ~ Dirichlet(1) floored at 1e-3/K and
        renormalised, drawn after the preferences from the same generator).

    Valid range: K ≥ 1 (an int, K² within memory); kind and ref among the listed choices.
    """
    K = check_int("K", K, low=1)
    # a few dense [K, K] float64 temporaries while drawing
    check_size_budget("K", K, memory_bytes=4 * 8 * float(K) ** 2)
    kind = check_choice("kind", kind, GAME_KINDS)
    ref = check_choice("ref", ref, ("uniform", "dirichlet"))
    rng = as_generator("seed", seed)
    pref = _random_preferences(rng, 1, K, kind)[0]
    mu = _random_ref(rng, 1, K, ref)[0]
    return PreferenceGame(pref, mu, name=f"random_{kind}(K={K})")


def random_contextual_game(
    X: int, K: int, seed: Any = 0, kind: str = "mixture", ref: str = "uniform"
) -> PreferenceGame:
    """A seeded random contextual game: X independent games of :func:`random_game`'s ``kind``.

    Args:
      X: number of contexts, ≥ 1; ρ is uniform.
      K: number of responses per context, ≥ 1.
      seed, kind, ref: as in :func:`random_game` (μ drawn independently per context).

    Returns:
      A game with ``pref`` [X, K, K] and ``ref`` [X, K].

    Valid range: X ≥ 1 and K ≥ 1 (ints) with X·K² within memory; kind and ref among the listed
    choices.
    """
    X = check_int("X", X, low=1)
    K = check_int("K", K, low=1)
    # a few dense [X, K, K] float64 temporaries while drawing
    check_size_budget("K" if K * K > X else "X", K if K * K > X else X,
                      memory_bytes=4 * 8 * float(X) * float(K) ** 2)
    kind = check_choice("kind", kind, GAME_KINDS)
    ref = check_choice("ref", ref, ("uniform", "dirichlet"))
    rng = as_generator("seed", seed)
    pref = _random_preferences(rng, X, K, kind)
    mu = _random_ref(rng, X, K, ref)
    return PreferenceGame(pref, mu, name=f"random_contextual_{kind}(X={X}, K={K})")
