"""Multi-turn dialogue games (MTPO, Shani et al. 2024, §3): frozen, validated specifications (numpy only).

A :class:`DialogueGame` is the paper's contextual, layered, finite-horizon MDP
``(C, X, Y, H, x_1, ρ, p)`` with an antisymmetric preference over final states and an optional
reward on final states.

Array layout (chosen so that the Numba backward recursion is one pass over flat arrays)
-----------------------------------------------------------------------------------------
* States carry their context: every state belongs to exactly one context ``c`` and states are
  numbered globally, layer by layer: layer ``h`` (0-based, h = 0 … H) holds the states
  ``layer_starts[h] : layer_starts[h+1]``. Layer 0 holds exactly the X initial states, state ``c``
  being context ``c``'s x_1. Layer H holds the final states x_{H+1}. N = total states,
  N_dec = ``layer_starts[H]`` decision states, F = N − N_dec final states.
* Every decision state has the same A actions. State–action pair ``(s, a)`` has flat index
  ``s·A + a``; its successors are the CSR slice ``transition_starts[s·A + a] :
  transition_starts[s·A + a + 1]`` of ``transition_next`` (global state ids in layer h+1, same
  context) and ``transition_probs``. Because successors always have larger ids, a single reverse
  sweep over decision states is a backward induction and a forward sweep is a forward pass.
* Final states are sorted by context: context ``c`` owns final states
  ``layer_starts[H] + final_starts[c] : layer_starts[H] + final_starts[c+1]`` (F_c of them), and its
  preference block ``P(x ≻ x' | c)`` is the dense F_c × F_c matrix stored row-major at
  ``preference_values[preference_starts[c] : preference_starts[c+1]]``.
* ``reference`` μ is [N_dec, A] with full support; ``final_reward`` is [F] or None.

Generators: :func:`random_layered_game` (seeded, vectorised, up to 10^6 state–action pairs and
beyond), :func:`tree_game` (deterministic transitions: token-level single-turn RL, Remark 3.3),
:func:`education_dialogue` and :func:`car_dealer` (see their docstrings).

Valid range: sizes ≥ 1 whose layered arrays fit the memory budget (tree games: A^H ≤ 4096;
layered games: X·F² ≤ ``MAX_PREFERENCE_ENTRIES`` and at most ``MAX_TRANSITION_ENTRIES`` transition
entries), probabilities in [0, 1], ``with_reward`` a bool; each generator's docstring states its own.
Outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from .checks import (
    as_float_array,
    as_generator,
    check_bool,
    check_distribution,
    check_int,
    check_scalar,
    check_size_budget,
)

__all__ = [
    "DialogueGame",
    "random_layered_game",
    "tree_game",
    "education_dialogue",
    "car_dealer",
]

# Antisymmetry P + Pᵀ = 1 is checked to this tolerance: float64 rounding of a sigmoid or of
# 1 − p is ~1e-16, any modelling error is orders of magnitude larger.
ANTISYMMETRY_TOLERANCE = 1e-9
# Dense per-context preference blocks: cap the generators at 5·10^7 entries (400 MB of float64).
MAX_PREFERENCE_ENTRIES = 50_000_000
# Transition entries (state–action pairs × branching) of a random layered game: 2·10⁷ entries are
# ~1 GB of arrays and validation temporaries and take seconds to draw and check; the largest game
# the benchmarks use has 3·10⁶.
MAX_TRANSITION_ENTRIES = 20_000_000


def _readonly_int(name: str, value: Any, ndim: int = 1) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != ndim or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a {ndim}-D integer array, got {array!r:.120}")
    array = np.array(array, dtype=np.int64, order="C", copy=True)
    array.setflags(write=False)
    return array


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64, order="C", copy=True)
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class DialogueGame:
    """Contextual layered finite-horizon game with preferences over final states (MTPO §3).

    Shapes: X contexts, H horizon, N states, N_dec decision states, A actions, E transition
    entries, F final states (F_c per context). See the module docstring for the layout.

    Attributes:
      context_probs: ρ [X], a distribution.
      layer_starts: [H+2] int, layer h holds states layer_starts[h]:layer_starts[h+1];
        layer_starts[0] = 0, layer_starts[1] = X.
      state_context: [N] int, the context of each state (state c has context c for c < X).
      num_actions: A.
      reference: μ [N_dec, A], full support.
      transition_starts: [N_dec·A + 1] int, CSR row pointers.
      transition_next: [E] int, successor states (layer h+1, same context).
      transition_probs: [E] float, p(x_{h+1} | c, x_h, y_h), rows summing to 1.
      final_starts: [X+1] int, context c owns final states with local ids final_starts[c]:final_starts[c+1].
      preference_values: flat concatenation of the X row-major blocks P(x ≻ x' | c) [F_c, F_c],
        antisymmetric (P + Pᵀ = 1).
      final_reward: [F] or None, r(x_{H+1}).
      name: a label.

    Valid range: no numeric arguments except num_actions ≥ 1 (an int, equal to the number of columns
    of reference); arrays must describe one consistent layered game (the layout of the module
    docstring: row-stochastic transition_probs and reference with full support, antisymmetric
    preference blocks within 1e-9, final_reward finite). Anything else raises ValueError naming the
    field.
    """

    context_probs: np.ndarray
    layer_starts: np.ndarray
    state_context: np.ndarray
    num_actions: int
    reference: np.ndarray
    transition_starts: np.ndarray
    transition_next: np.ndarray
    transition_probs: np.ndarray
    final_starts: np.ndarray
    preference_values: np.ndarray
    final_reward: np.ndarray | None = None
    name: str = "dialogue-game"
    labels: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        rho = check_distribution("context_probs", self.context_probs, ndim=1, full_support=True)
        setattr_(self, "context_probs", _readonly(rho))
        X = rho.shape[0]
        A = check_int("num_actions", self.num_actions, low=1)
        setattr_(self, "num_actions", A)
        layers = _readonly_int("layer_starts", self.layer_starts)
        if layers.size < 3:
            raise ValueError(f"layer_starts must have H + 2 ≥ 3 entries, got {layers.size}")
        if layers[0] != 0 or layers[1] != X or np.any(np.diff(layers) <= 0):
            raise ValueError(
                f"layer_starts must start 0, X={X} and increase strictly, got {layers[:6]}..."
            )
        setattr_(self, "layer_starts", layers)
        N = int(layers[-1])
        n_dec = int(layers[-2])
        ctx = _readonly_int("state_context", self.state_context)
        if ctx.size != N or np.any(ctx < 0) or np.any(ctx >= X):
            raise ValueError(f"state_context must have N={N} entries in [0, {X}), got {ctx.size}")
        if np.any(ctx[:X] != np.arange(X)):
            raise ValueError("state_context must map initial state c to context c")
        setattr_(self, "state_context", ctx)
        ref = as_float_array("reference", self.reference, ndim=2)
        if ref.shape[1] != A:
            raise ValueError(
                f"num_actions={A} does not match reference, whose rows have {ref.shape[1]} "
                f"actions (reference must have shape (N_dec, num_actions) = ({n_dec}, {A}))"
            )
        ref = check_distribution("reference", ref, shape=(n_dec, A), full_support=True, copy=True)
        setattr_(self, "reference", _readonly(ref))
        starts = _readonly_int("transition_starts", self.transition_starts)
        if starts.size != n_dec * A + 1 or starts[0] != 0 or np.any(np.diff(starts) <= 0):
            raise ValueError(
                f"transition_starts must have N_dec·A + 1 = {n_dec * A + 1} strictly increasing "
                f"entries from 0 (every state-action pair has a successor), got size {starts.size}"
            )
        nxt = _readonly_int("transition_next", self.transition_next)
        probs = as_float_array("transition_probs", self.transition_probs, ndim=1, nonnegative=True)
        if nxt.size != starts[-1] or probs.size != starts[-1]:
            raise ValueError(
                f"transition_next and transition_probs must have {starts[-1]} entries, "
                f"got {nxt.size} and {probs.size}"
            )
        sums = np.add.reduceat(probs, starts[:-1])
        worst = float(np.max(np.abs(sums - 1.0)))
        if worst > 1e-9:
            raise ValueError(f"transition_probs must sum to 1 per state-action pair, off by {worst:.3g}")
        src_state = np.repeat(np.arange(n_dec), A)
        src = np.repeat(src_state, np.diff(starts))
        layer_of = np.searchsorted(layers, np.arange(N), side="right") - 1
        if np.any(nxt < 0) or np.any(nxt >= N):
            raise ValueError(f"transition_next must hold state ids in [0, {N}), got {nxt.min()}..{nxt.max()}")
        if np.any(layer_of[nxt] != layer_of[src] + 1):
            raise ValueError("transition_next must point from layer h to layer h + 1")
        if np.any(ctx[nxt] != ctx[src]):
            raise ValueError("transition_next must stay inside the context of the source state")
        setattr_(self, "transition_next", nxt)
        setattr_(self, "transition_probs", _readonly(probs))
        fstarts = _readonly_int("final_starts", self.final_starts)
        F = N - n_dec
        if fstarts.size != X + 1 or fstarts[0] != 0 or fstarts[-1] != F or np.any(np.diff(fstarts) <= 0):
            raise ValueError(f"final_starts must have X + 1 = {X + 1} increasing entries from 0 to F={F}")
        if np.any(ctx[n_dec:] != np.repeat(np.arange(X), np.diff(fstarts))):
            raise ValueError("final states must be sorted by context consistently with final_starts")
        setattr_(self, "final_starts", fstarts)
        sizes = np.diff(fstarts)
        pref = as_float_array("preference_values", self.preference_values, ndim=1)
        if pref.size != int(np.sum(sizes**2)):
            raise ValueError(
                f"preference_values must hold Σ_c F_c² = {int(np.sum(sizes ** 2))} entries, got {pref.size}"
            )
        if np.any(pref < 0) or np.any(pref > 1):
            raise ValueError(f"preference_values must lie in [0, 1], got {pref.min()}..{pref.max()}")
        # blocks of equal size are checked together (a Python loop per context took seconds
        # for 10⁵ contexts), in chunks of ≤ 2²² entries
        offsets = np.concatenate([[0], np.cumsum(sizes**2)])[:-1]
        for size in np.unique(sizes):
            size = int(size)
            owners = offsets[sizes == size]
            step = max(1, 2**22 // (size * size))
            for lo in range(0, owners.size, step):
                index = owners[lo : lo + step, None] + np.arange(size * size)[None, :]
                block = pref[index].reshape(-1, size, size)
                worst = float(np.max(np.abs(block + block.transpose(0, 2, 1) - 1.0)))
                if worst > ANTISYMMETRY_TOLERANCE:
                    raise ValueError(
                        f"preference must be antisymmetric (P + Pᵀ = 1), off by {worst:.3g}"
                    )
        setattr_(self, "preference_values", _readonly(pref))
        if self.final_reward is not None:
            reward = as_float_array("final_reward", self.final_reward, shape=(F,))
            setattr_(self, "final_reward", _readonly(reward))
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")

    # --- sizes -------------------------------------------------------------------------------
    @property
    def num_contexts(self) -> int:
        return int(self.context_probs.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.layer_starts.size - 2)

    @property
    def num_states(self) -> int:
        return int(self.layer_starts[-1])

    @property
    def num_decision_states(self) -> int:
        return int(self.layer_starts[-2])

    @property
    def num_final_states(self) -> int:
        return self.num_states - self.num_decision_states

    @property
    def num_state_action_pairs(self) -> int:
        return self.num_decision_states * self.num_actions

    @property
    def preference_starts(self) -> np.ndarray:
        """[X+1] offsets of the per-context preference blocks in ``preference_values``."""
        return np.concatenate([[0], np.cumsum(np.diff(self.final_starts) ** 2)]).astype(np.int64)

    def layer_of(self, state: int) -> int:
        """The layer (0 … H) of a global state id."""
        return int(np.searchsorted(self.layer_starts, state, side="right") - 1)

    def preference_matrix(self, context: int) -> np.ndarray:
        """P(x ≻ x' | c) [F_c, F_c] over the context's final states (local ids)."""
        c = check_int("context", context, low=0, high=self.num_contexts - 1)
        size = int(self.final_starts[c + 1] - self.final_starts[c])
        start = int(self.preference_starts[c])
        return self.preference_values[start : start + size * size].reshape(size, size)

    def preference(self, final_a: int, final_b: int) -> float:
        """P(x_a ≻ x_b | c) for two global final-state ids of the same context."""
        n_dec = self.num_decision_states
        a = check_int("final_a", final_a, low=n_dec, high=self.num_states - 1)
        b = check_int("final_b", final_b, low=n_dec, high=self.num_states - 1)
        c = int(self.state_context[a])
        if int(self.state_context[b]) != c:
            raise ValueError(f"final_b must share the context of final_a ({c}), got state {b}")
        base = n_dec + int(self.final_starts[c])
        return float(self.preference_matrix(c)[a - base, b - base])

    def transitions(self, state: int, action: int) -> tuple[np.ndarray, np.ndarray]:
        """(successor states, probabilities) of a state–action pair."""
        s = check_int("state", state, low=0, high=self.num_decision_states - 1)
        a = check_int("action", action, low=0, high=self.num_actions - 1)
        k = s * self.num_actions + a
        lo, hi = int(self.transition_starts[k]), int(self.transition_starts[k + 1])
        return self.transition_next[lo:hi], self.transition_probs[lo:hi]


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _antisymmetric_random(rng: np.random.Generator, size: int, count: int = 1) -> np.ndarray:
    """[count, F, F] blocks P = (1 + U − Uᵀ)/2 with U ~ Uniform[0,1]^{F×F}: antisymmetric, in
    [0, 1]. One draw of count·F² uniforms: the same stream as ``count`` draws of F²."""
    upper = rng.random((count, size, size))
    return 0.5 * (1.0 + upper - upper.transpose(0, 2, 1))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _reference(rng: np.random.Generator, n: int, A: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        return np.full((n, A), 1.0 / A)
    if kind == "random":
        ref = rng.dirichlet(np.ones(A), size=n) + 1e-3
        return ref / ref.sum(axis=1, keepdims=True)
    raise ValueError(f"reference must be one of ('uniform', 'random'), got {kind!r}")


def random_layered_game(
    *,
    num_contexts: int = 2,
    horizon: int = 3,
    states_per_layer: int = 4,
    num_actions: int = 3,
    branching: int = 2,
    final_states: int | None = None,
    reference: str = "random",
    with_reward: bool = False,
    seed: int = 0,
) -> DialogueGame:
    """Random layered game (seeded). Per context: 1 initial state, ``states_per_layer`` states in
    layers 1 … H−1 and ``final_states`` (default ``states_per_layer``) final states; each
    state–action pair moves to ``branching`` uniformly drawn successors (drawn with replacement)
    with Dirichlet(1) probabilities. Preference blocks are ``(1 + U − Uᵀ)/2``; with
    ``with_reward`` a reward r ~ U[0,1] is attached and the preference is σ(r − r') instead.

    State–action pairs: X·A·(1 + (H−1)·states_per_layer); e.g. X=4, H=5, S=25 000, A=10 gives
    about 10^6.

    Valid range: num_contexts, horizon, states_per_layer, num_actions, branching and final_states
    are ints ≥ 1 (final_states None: states_per_layer); num_contexts·F² ≤ MAX_PREFERENCE_ENTRIES =
    5·10⁷ dense preference entries (F = final states per context) and num_contexts·(1 +
    states_per_layer·(horizon − 1))·num_actions·branching ≤ MAX_TRANSITION_ENTRIES = 2·10⁷
    transition entries; reference 'uniform' or 'random'; with_reward a bool.
    """
    X = check_int("num_contexts", num_contexts, low=1)
    H = check_int("horizon", horizon, low=1)
    S = check_int("states_per_layer", states_per_layer, low=1)
    A = check_int("num_actions", num_actions, low=1)
    B = check_int("branching", branching, low=1)
    F = S if final_states is None else check_int("final_states", final_states, low=1)
    with_reward = check_bool("with_reward", with_reward)
    if X * F * F > MAX_PREFERENCE_ENTRIES:
        culprit = "num_contexts" if X > F * F else (
            "final_states" if final_states is not None else "states_per_layer"
        )
        raise ValueError(
            f"{culprit} too large: num_contexts·F² must stay ≤ {MAX_PREFERENCE_ENTRIES} dense "
            f"preference entries (F = final states per context), got num_contexts={X}, F={F}"
        )
    # decision states X(1 + S(H − 1)), each with A·B transition entries (a few int/float arrays)
    pairs = float(X) * (1 + float(S) * (H - 1)) * A
    culprit, value = max((("horizon", H), ("num_actions", A), ("branching", B)), key=lambda t: t[1])
    check_size_budget(culprit, value, memory_bytes=6 * 8 * pairs * B)
    if pairs * B > MAX_TRANSITION_ENTRIES:
        sizes = {"num_contexts": X, "horizon": H, "states_per_layer": S, "num_actions": A,
                 "branching": B}
        raise ValueError(
            f"{culprit} too large: num_contexts·(1 + states_per_layer·(horizon − 1))·num_actions·"
            f"branching = {pairs * B:.3g} transition entries, above the generator's limit of "
            f"{MAX_TRANSITION_ENTRIES:.0e} (got {', '.join(f'{k}={v}' for k, v in sizes.items())})"
        )
    rng = as_generator("seed", seed)
    sizes = [X] + [X * S] * (H - 1) + [X * F]
    layer_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    # contexts: layer 0 state c -> c; layers ≥ 1 sorted by context in blocks
    per_ctx = [1] + [S] * (H - 1) + [F]
    state_context = np.concatenate([np.repeat(np.arange(X), n) for n in per_ctx])
    n_dec = int(layer_starts[H])
    src_ctx = state_context[:n_dec]
    src_layer = np.concatenate([np.full(n, h) for h, n in enumerate(sizes[:-1])])
    next_size = np.array(per_ctx[1:])[src_layer]  # per-context size of the next layer
    next_base = layer_starts[src_layer + 1] + src_ctx * next_size
    pairs = n_dec * A
    draws = rng.random((pairs, B))
    local = np.floor(draws * np.repeat(next_size, A)[:, None]).astype(np.int64)
    nxt = (np.repeat(next_base, A)[:, None] + local).ravel()
    probs = rng.dirichlet(np.ones(B), size=pairs).ravel() if B > 1 else np.ones(pairs)
    starts = np.arange(0, pairs * B + 1, B, dtype=np.int64)
    ref = _reference(rng, n_dec, A, reference)
    reward = None
    blocks = []
    # all contexts at once (one draw of X·F² uniforms is the same stream as X draws of F²)
    if with_reward:
        reward = rng.random(X * F)
        r = reward.reshape(X, F)
        blocks.append(_sigmoid(r[:, :, None] - r[:, None, :]).ravel())
    else:
        blocks.append(_antisymmetric_random(rng, F, X).ravel())
    return DialogueGame(
        context_probs=rng.dirichlet(np.ones(X)) * 0.5 + 0.5 / X,
        layer_starts=layer_starts,
        state_context=state_context,
        num_actions=A,
        reference=ref,
        transition_starts=starts,
        transition_next=nxt,
        transition_probs=probs,
        final_starts=np.arange(0, X * F + 1, F),
        preference_values=np.concatenate(blocks),
        final_reward=reward,
        name=f"random-layered(X={X},H={H},S={S},A={A},B={B})",
    )


def _tree_layout(X: int, H: int, A: int):
    """Tree states per context: all action prefixes; returns layer_starts, state_context, next."""
    per_layer = [A**h for h in range(H + 1)]
    sizes = [X * n for n in per_layer]
    layer_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    state_context = np.concatenate([np.repeat(np.arange(X), n) for n in per_layer])
    # the m-th state of layer h (m = c·A^h + i) has children m·A + a of layer h + 1
    nxt = [
        (layer_starts[h + 1] + np.arange(sizes[h], dtype=np.int64)[:, None] * A
         + np.arange(A, dtype=np.int64)[None, :]).ravel()
        for h in range(H)
    ]
    return layer_starts, state_context, np.concatenate(nxt)


def tree_game(
    *,
    num_contexts: int = 1,
    horizon: int = 2,
    num_actions: int = 3,
    reference: str = "random",
    seed: int = 0,
) -> DialogueGame:
    """Deterministic tree game (Remark 3.3: token-level single-turn RL): state = action prefix,
    x_{h+1} = x_h · y_h with probability 1; final states are the A^H sequences of each context;
    preference blocks ``(1 + U − Uᵀ)/2``.

    Valid range: num_contexts, horizon, num_actions ints ≥ 1 with num_actions**horizon ≤ 4096 (dense
    F×F preference per context) and the num_contexts copies within the memory budget; reference
    'uniform' or 'random'.
    """
    X = check_int("num_contexts", num_contexts, low=1)
    H = check_int("horizon", horizon, low=1)
    A = check_int("num_actions", num_actions, low=1)
    if H * np.log(max(A, 1)) > np.log(4096) + 1e-9:  # A**H without building a huge integer
        culprit = "horizon" if H > A else "num_actions"
        raise ValueError(
            f"{culprit} too large: num_actions**horizon must be ≤ 4096 (dense F×F preference per "
            f"context), got num_actions={A}, horizon={H}"
        )
    check_size_budget("num_contexts", X, memory_bytes=4 * 8 * float(X) * A**H * (1 + A**H))
    rng = as_generator("seed", seed)
    layer_starts, state_context, nxt = _tree_layout(X, H, A)
    n_dec = int(layer_starts[H])
    F = A**H
    return DialogueGame(
        context_probs=np.full(X, 1.0 / X),
        layer_starts=layer_starts,
        state_context=state_context,
        num_actions=A,
        reference=_reference(rng, n_dec, A, reference),
        transition_starts=np.arange(n_dec * A + 1, dtype=np.int64),
        transition_next=nxt,
        transition_probs=np.ones(n_dec * A),
        final_starts=np.arange(0, X * F + 1, F),
        preference_values=_antisymmetric_random(rng, F, X).ravel(),
        name=f"tree(X={X},H={H},A={A})",
    )


# --------------------------------------------------------------------------------------------
# Education Dialogue
# --------------------------------------------------------------------------------------------

TEACHER_ACTIONS = ("explain", "ask_question", "give_exercise", "tell_story", "check_understanding")
LEARNING_STYLES = ("lecture", "interactive", "hands_on", "storytelling")
TEMPERAMENTS = ("patient", "impatient")
REACTIONS = ("negative", "positive")


def education_dialogue(
    *,
    horizon: int = 3,
    num_topics: int = 2,
    match_prob: float = 0.85,
    mismatch_prob: float = 0.35,
    check_prob: float = 0.6,
    repeat_penalty: float = 0.25,
    sharpness: float = 3.0,
    cycle_weight: float = 0.3,
    seed: int = 0,
) -> DialogueGame:
    """Tabular teacher–student game modelled on the paper's Education Dialogue (§5, App. C).

    Design.
      * Context = topic (``num_topics`` of them, uniform). Each topic has its own prior over the
        8 hidden student types (4 learning styles × 2 temperaments), drawn Dirichlet(2) from ``seed``.
      * Teacher actions (A = 5): explain (suits "lecture"), ask a question ("interactive"), give an
        exercise ("hands_on"), tell a story ("storytelling"), check understanding (suits nobody
        in particular but reacts positively with ``check_prob`` for every type).
      * Student reaction each turn: positive / negative. P(positive | type, action, history) =
        ``match_prob`` if the action suits the style, ``mismatch_prob`` otherwise (``check_prob``
        for check_understanding), minus ``repeat_penalty`` for an *impatient* student when the
        action repeats the previous turn's action.
      * The type is hidden: the state is the dialogue history (actions and reactions), and
        transitions are posterior-predictive, p(r | history, y) = Σ_type P(type | history) ·
        p(r | type, y, history) (a belief MDP, exact by Bayes' rule). Per topic: (2A)^h states at
        layer h; (2A)^H final states (1000 for H = 3).
      * Final state features (posterior expectations given the full history): understanding u =
        E[# turns whose action suited the style and got a positive reaction] + 0.5·[a check was
        positive]; engagement e = # positive reactions / H.
      * Preference: P(x ≻ x') = (1 − γ)·σ(β·((u − u') + (e − e'))) + γ·(1 + C[k(x), k(x')])/2,
        where k(x) ∈ {talk, ask, do} is the final dialogue's dominant teaching mode (explain/story
        → talk, question/check → ask, exercise → do; ties by first occurrence) and C is the
        rock–paper–scissors matrix (talk beats do, do beats ask, ask beats talk). The γ term is
        intransitive, so no Bradley–Terry reward reproduces P exactly when γ = ``cycle_weight`` > 0.
        The preference is antisymmetric by construction.

    Valid range: horizon an int in [1, 3] ((2A)^H = 1000 final states at H = 3); num_topics ≥ 1
    within the work budget; match_prob, mismatch_prob, check_prob, repeat_penalty and cycle_weight
    in [0, 1]; sharpness ≥ 0 (finite).
    """
    H = check_int("horizon", horizon, low=1, high=3)  # (2A)^H final states; H=3 gives 1000
    X = check_int("num_topics", num_topics, low=1)
    check_size_budget("num_topics", X, work=1e4 * float(X) * 20**H)  # (2A)^H histories per topic
    p_match = check_scalar("match_prob", match_prob, low=0.0, high=1.0)
    p_mis = check_scalar("mismatch_prob", mismatch_prob, low=0.0, high=1.0)
    p_check = check_scalar("check_prob", check_prob, low=0.0, high=1.0)
    penalty = check_scalar("repeat_penalty", repeat_penalty, low=0.0, high=1.0)
    beta = check_scalar("sharpness", sharpness, low=0.0)
    gamma = check_scalar("cycle_weight", cycle_weight, low=0.0, high=1.0)
    rng = as_generator("seed", seed)
    A, R = len(TEACHER_ACTIONS), len(REACTIONS)
    styles, temps = len(LEARNING_STYLES), len(TEMPERAMENTS)
    types = [(s, t) for s in range(styles) for t in range(temps)]
    priors = rng.dirichlet(np.full(len(types), 2.0), size=X)

    def positive_prob(type_, action, previous):
        style, temper = type_
        if action == 4:
            base = p_check
        else:
            base = p_match if action == style else p_mis
        if temper == 1 and previous == action:
            base = max(base - penalty, 0.0)
        return base

    mode_of = np.array([0, 1, 2, 0, 1])  # talk, ask, do
    # states at layer h: histories of (action, reaction) pairs, enumerated in lexicographic order
    per_layer = [(A * R) ** h for h in range(H + 1)]
    layer_sizes = [X * n for n in per_layer]
    layer_starts = np.concatenate([[0], np.cumsum(layer_sizes)]).astype(np.int64)
    state_context = np.concatenate([np.repeat(np.arange(X), n) for n in per_layer])
    n_dec = int(layer_starts[H])
    nxt = np.empty(n_dec * A * R, dtype=np.int64)
    probs = np.empty(n_dec * A * R)
    features = np.empty((X, per_layer[H], 2))
    modes = np.empty((X, per_layer[H]), dtype=np.int64)
    for c in range(X):
        for h in range(H + 1):
            for index, history in enumerate(itertools.product(range(A * R), repeat=h)):
                acts = [code // R for code in history]
                reacts = [code % R for code in history]
                # posterior over types given the history (Bayes' rule)
                weights = priors[c].copy()
                for turn, (act, rea) in enumerate(zip(acts, reacts)):
                    prev = acts[turn - 1] if turn else -1
                    for k, type_ in enumerate(types):
                        q = positive_prob(type_, act, prev)
                        weights[k] *= q if rea == 1 else 1.0 - q
                total = weights.sum()
                post = weights / total if total > 0 else priors[c]
                if h < H:
                    s = layer_starts[h] + c * per_layer[h] + index
                    prev = acts[-1] if h else -1
                    for a in range(A):
                        q = sum(post[k] * positive_prob(types[k], a, prev) for k in range(len(types)))
                        # a convex combination of probabilities in [0, 1] may round to 1 + 1e-16
                        q = min(max(q, 0.0), 1.0)
                        base = (s * A + a) * R
                        child = layer_starts[h + 1] + c * per_layer[h + 1] + index * A * R + a * R
                        nxt[base : base + R] = [child, child + 1]
                        probs[base : base + R] = [1.0 - q, q]
                else:
                    understanding = 0.0
                    for turn, (act, rea) in enumerate(zip(acts, reacts)):
                        if rea == 1 and act < 4:
                            understanding += sum(
                                post[k] for k, type_ in enumerate(types) if type_[0] == act
                            )
                    if any(act == 4 and rea == 1 for act, rea in zip(acts, reacts)):
                        understanding += 0.5
                    engagement = sum(reacts) / H
                    features[c, index] = (understanding, engagement)
                    counts = np.bincount(mode_of[acts], minlength=3)
                    modes[c, index] = int(np.argmax(counts))
    # the R successors of a pair may coincide in probability 0 branches; keep them (valid CSR)
    cycle = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=np.float64)  # talk>do, do>ask, ask>talk
    blocks = []
    for c in range(X):
        score = features[c, :, 0] + features[c, :, 1]
        smooth = _sigmoid(beta * (score[:, None] - score[None, :]))
        cyc = 0.5 * (1.0 + cycle[modes[c][:, None], modes[c][None, :]])
        blocks.append(((1.0 - gamma) * smooth + gamma * cyc).ravel())
    F = per_layer[H]
    return DialogueGame(
        context_probs=np.full(X, 1.0 / X),
        layer_starts=layer_starts,
        state_context=state_context,
        num_actions=A,
        reference=_reference(rng, n_dec, A, "random"),
        transition_starts=np.arange(0, n_dec * A * R + 1, R, dtype=np.int64),
        transition_next=nxt,
        transition_probs=probs,
        final_starts=np.arange(0, X * F + 1, F),
        preference_values=np.concatenate(blocks),
        name=f"education-dialogue(H={H},topics={X})",
        labels={
            "actions": TEACHER_ACTIONS,
            "understanding": features[:, :, 0].ravel().copy(),
            "engagement": features[:, :, 1].ravel().copy(),
            "mode": modes.ravel().copy(),
        },
    )


# --------------------------------------------------------------------------------------------
# Car Dealer
# --------------------------------------------------------------------------------------------


def car_dealer(
    *,
    horizon: int = 4,
    prices: Any = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
    num_segments: int = 2,
    leave_prob: float = 0.15,
    seed: int = 0,
) -> DialogueGame:
    """Tabular negotiation after LMRL-Gym's Car Dealer.

    Design.
      * Context = customer segment (``num_segments``, uniform), each with a prior over a hidden
        budget b ∈ ``prices`` (Dirichlet(2) per segment from ``seed``). Prices are in units of
        $10 000, so σ(r₁ − r₂) is a graded preference.
      * Dealer actions (A = K = len(prices)): "offer price k".
      * Customer: accepts offer k iff prices[k] ≤ b (a sale at that price: reward prices[k]);
        otherwise rejects, and walks away with probability ``leave_prob`` (no sale: reward 0).
      * The budget is hidden: a negotiating state is (turn, lowest rejected offer m), which is
        the sufficient statistic (posterior = prior restricted to budgets below prices[m]);
        sold-at-k and walked-away states are absorbing (every action keeps them).
      * Final states per segment: "sold at k" (k < K), "no sale" and "still negotiating after H
        turns" (no sale). reward = sale price (0 without a sale); preference σ(r₁ − r₂).

    Valid range: horizon ≥ 1 and num_segments ≥ 1 (ints, within the work budget); prices ≥ 2
    strictly increasing non-negative values; leave_prob in [0, 1].
    """
    H = check_int("horizon", horizon, low=1)
    price = as_float_array("prices", prices, ndim=1, nonnegative=True)
    K = price.size
    if K < 2 or np.any(np.diff(price) <= 0):
        raise ValueError(f"prices must be ≥ 2 strictly increasing values, got {price}")
    X = check_int("num_segments", num_segments, low=1)
    # X·(2K + 2) states per layer, K actions each (Python loops build the transition lists)
    states = float(X) * (2 * K + 2) * (H + 1)
    check_size_budget("horizon" if H >= X else "num_segments", H if H >= X else X,
                      work=1e3 * states * K, memory_bytes=8 * 8 * states * K)
    leave = check_scalar("leave_prob", leave_prob, low=0.0, high=1.0)
    rng = as_generator("seed", seed)
    priors = rng.dirichlet(np.full(K, 2.0), size=X)
    # per-context layer h state list: ("neg", m) for m in 0..K (m = K: nothing rejected yet),
    # ("sold", k), ("left",)
    local = [("neg", m) for m in range(K + 1)] + [("sold", k) for k in range(K)] + [("left",)]
    index = {s: i for i, s in enumerate(local)}
    L = len(local)
    per_layer = [1] + [L] * H
    layer_starts = np.concatenate([[0], np.cumsum([X * n for n in per_layer])]).astype(np.int64)
    state_context = np.concatenate([np.repeat(np.arange(X), n) for n in per_layer])
    n_dec = int(layer_starts[H])
    starts, nxt, probs = [0], [], []

    def global_id(h, c, state):
        if h == 0:
            return c
        return int(layer_starts[h] + c * L + index[state])

    for h in range(H):
        states_here = [("neg", K)] if h == 0 else local
        for c in range(X):
            for state in states_here:
                for a in range(K):
                    if state[0] != "neg":
                        branches = {state: 1.0}
                    else:
                        m = state[1]
                        support = priors[c][:m]  # budgets below the lowest rejected price
                        total = support.sum()
                        post = support / total if total > 0 else np.full(max(m, 1), 1.0 / max(m, 1))
                        accept = float(post[a:].sum()) if a < m else 0.0
                        branches = {}
                        if accept > 0:
                            branches[("sold", a)] = accept
                        reject = 1.0 - accept
                        if reject > 0:
                            branches[("left",)] = reject * leave
                            branches[("neg", min(m, a))] = reject * (1 - leave)
                        branches = {k: v for k, v in branches.items() if v > 0}
                    for target, p in branches.items():
                        nxt.append(global_id(h + 1, c, target))
                        probs.append(p)
                    starts.append(len(nxt))
    reward_local = np.array(
        [price[s[1]] if s[0] == "sold" else 0.0 for s in local], dtype=np.float64
    )
    reward = np.tile(reward_local, X)
    block = _sigmoid(reward_local[:, None] - reward_local[None, :]).ravel()
    return DialogueGame(
        context_probs=np.full(X, 1.0 / X),
        layer_starts=layer_starts,
        state_context=state_context,
        num_actions=K,
        reference=_reference(rng, n_dec, K, "random"),
        transition_starts=np.array(starts, dtype=np.int64),
        transition_next=np.array(nxt, dtype=np.int64),
        transition_probs=np.array(probs),
        final_starts=np.arange(0, X * L + 1, L),
        preference_values=np.tile(block, X),
        final_reward=reward,
        name=f"car-dealer(H={H},K={K})",
        labels={"prices": price.copy(), "local_states": tuple(local)},
    )
