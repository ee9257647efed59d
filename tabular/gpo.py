"""Offline GPO training of softmax contextual-bandit policies, and its regularisation analysis.

Tang et al., "Generalized Preference Optimization", ICML 2024 (arXiv 2402.05749); loss family in
its §2 and Table 1, regularisation analysis in its §4.

Setting (shapes: X contexts, K responses, N triples, C checkpoints):
  ref            [X, K]     reference policy π_ref (full support)
  logits         [X, K]     softmax policy π_θ(·|x) = softmax(θ_x); training starts at θ = log π_ref
  pref           [X, K, K]  pref[x, i, j] = P(y_i ≻ y_j | x), pref + prefᵀ = 1
  coverage       [X, K]     μ(·|x), the distribution the offline pairs are drawn from
  pair_weights   [X, K, K]  distribution of labelled triples (x, y_w, y_l); sums to 1

One population step (exact expected gradient):
  1. ρ[x, w, l] = (θ_w − log π_ref(w)) − (θ_l − log π_ref(l))               (log-ratio margin)
  2. L(θ) = Σ_{x,w,l} W[x, w, l] · f(β ρ[x, w, l])                            (GPO §2)
  3. ∂L/∂θ[x, k] = Σ_l W[x,k,l] β f′(βρ[x,k,l]) − Σ_w W[x,w,k] β f′(βρ[x,w,k])
     (the margin depends on θ only through differences, so the softmax normaliser drops out).
The sample-based version replaces W by the empirical frequencies of a sampled dataset.

Closed forms used as oracles (GPO Table 1; derived): DPO (logistic) on Bradley–Terry labels with
full coverage → π ∝ π_ref·exp(r/β); IPO (squared) with pairs from μ×μ → π ∝ π_ref·exp(2P(y ≻ μ)/β)
on the support of μ (responses outside it keep their logits).

Valid range: β > 0, preferences in [0, 1] with P + Pᵀ = 1, π_ref full support, learning rates
> 0; steps, sample counts and Newton iterations within the work budget of
``fixpoint_rl.envs.checks.check_size_budget``. Outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import time

import numpy as np

from ..envs.checks import (
    as_float_array,
    as_generator,
    check_distribution,
    check_int,
    check_scalar,
    check_size_budget,
)
from .core.mirror import kl_divergence, log_softmax, softmax
from .core.preference_losses import (
    check_kind,
    gpo_loss,
    gpo_loss_derivative,
    gpo_loss_second_derivative,
)
from .core.result import SolverResult

__all__ = [
    "bradley_terry_preference",
    "dpo_optimum",
    "empirical_pair_weights",
    "gpo_margins",
    "gpo_population_loss",
    "ipo_optimum",
    "kl_to_reference",
    "matched_beta",
    "offline_regularizer",
    "preference_pair_weights",
    "sample_preference_dataset",
    "solve_gpo",
    "train_gpo",
    "win_rate",
]

_PREF_ATOL = 1e-9


# ----------------------------------------------------------------------------- validation helpers
def _check_ref(ref):
    return check_distribution("ref", ref, ndim=2, full_support=True)


def _check_pref(pref, shape=None, name="pref"):
    pref = as_float_array(name, pref, ndim=3, shape=shape)
    if pref.shape[1] != pref.shape[2]:
        raise ValueError(f"{name} must have shape [X, K, K], got shape {pref.shape}")
    if np.any(pref < 0) or np.any(pref > 1):
        raise ValueError(f"{name} must have entries in [0, 1]")
    worst = float(np.max(np.abs(pref + np.swapaxes(pref, 1, 2) - 1.0)))
    if worst > _PREF_ATOL:
        raise ValueError(f"{name} must satisfy {name} + {name}ᵀ = 1, got deviation {worst:.3g}")
    return pref


def _check_pair_weights(pair_weights, shape=None):
    weights = as_float_array("pair_weights", pair_weights, ndim=3, shape=shape, nonnegative=True)
    if weights.shape[1] != weights.shape[2]:
        raise ValueError(f"pair_weights must have shape [X, K, K], got shape {weights.shape}")
    total = float(weights.sum())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"pair_weights must sum to 1, got {total!r}")
    return weights


def _context_probs(context_probs, num_contexts):
    if context_probs is None:
        return np.full(num_contexts, 1.0 / num_contexts)
    return check_distribution("context_probs", context_probs, shape=(num_contexts,))


# ----------------------------------------------------------------------------------- closed forms
def bradley_terry_preference(reward):
    """Bradley–Terry preference P(y_i ≻ y_j | x) = σ(r(x, y_i) − r(x, y_j)).

    Args:
      reward: [X, K] rewards.

    Returns:
      [X, K, K] preference tensor (pref + prefᵀ = 1, diagonal ½).
    """
    reward = as_float_array("reward", reward, ndim=2)
    diff = reward[:, :, None] - reward[:, None, :]
    return 0.5 * (1.0 + np.tanh(0.5 * diff))  # σ(d), exactly antisymmetric in rounding


def dpo_optimum(ref, reward, beta):
    """π*(y|x) ∝ π_ref(y|x)·exp(r(x, y)/β): the population DPO optimum on BT data. [X, K]."""
    ref = _check_ref(ref)
    reward = as_float_array("reward", reward, shape=ref.shape)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    return softmax(np.log(ref) + reward / beta)


def ipo_optimum(ref, pref, coverage, beta):
    """π*(y|x) ∝ π_ref(y|x)·exp(2·P(y ≻ μ | x)/β): population IPO optimum, pairs from μ×μ.

    GPO squared loss f(x) = (x − 1)² with β inside f (GPO Table 1; IPO's τ = β/2). Stationarity gives
    β(ρ_y − E_μ ρ) = 2P(y ≻ μ) − 1 for every y with μ(y) > 0; responses with μ(y) = 0 are not
    constrained and keep their reference logit (the answer of gradient methods from θ = log π_ref).

    Args:
      ref: [X, K]; pref: [X, K, K]; coverage: [X, K] μ; beta: > 0.

    Returns:
      [X, K] the optimum policy.
    """
    ref = _check_ref(ref)
    pref = _check_pref(pref, shape=(ref.shape[0], ref.shape[1], ref.shape[1]))
    coverage = check_distribution("coverage", coverage, shape=ref.shape)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    win = np.einsum("xij,xj->xi", pref, coverage)
    covered = coverage > 0
    # Covered responses: ρ_y = 2P(y ≻ μ)/β + c_x. Every gradient of the loss in the logits sums to
    # zero per context and vanishes on uncovered responses, so gradient methods started at
    # θ = log π_ref keep Σ_y ρ_y = 0 and ρ_y = 0 off the support: that fixes c_x.
    count = covered.sum(axis=1, keepdims=True)
    mean_win = np.sum(np.where(covered, win, 0.0), axis=1, keepdims=True) / count
    centred = np.where(covered, 2.0 * (win - mean_win) / beta, 0.0)
    return softmax(np.log(ref) + centred)


def preference_pair_weights(pref, coverage, context_probs=None):
    """Distribution of labelled triples (x, y_w, y_l) for pairs drawn from μ×μ and labelled by P.

    W[x, w, l] = 2·ν(x)·μ(w|x)·μ(l|x)·P(w ≻ l | x)   (draw y₁, y₂ ∼ μ i.i.d.; y₁ wins w.p. P;
    the triple (w, l) arises from (y₁, y₂) = (w, l) or (l, w), hence the 2).

    Valid range: no numeric arguments; ``pref`` preference matrices (entries in [0, 1],
    P + Pᵀ = 1), ``coverage`` and ``context_probs`` distributions (zeros allowed).

    Args:
      pref: [X, K, K]; coverage: [X, K] μ (zeros allowed: no coverage);
      context_probs: [X] ν, uniform when omitted.

    Returns:
      [X, K, K] pair weights summing to 1.
    """
    pref = _check_pref(pref)
    num_contexts, num_responses, _ = pref.shape
    coverage = check_distribution("coverage", coverage, shape=(num_contexts, num_responses))
    nu = _context_probs(context_probs, num_contexts)
    return 2.0 * nu[:, None, None] * coverage[:, :, None] * coverage[:, None, :] * pref


def sample_preference_dataset(pref, coverage, num_samples, seed, context_probs=None):
    """Sample N labelled triples: x ∼ ν, y₁, y₂ ∼ μ(·|x) i.i.d., y₁ wins with probability P(y₁ ≻ y₂|x).

    Valid range: ``num_samples`` N ≥ 1 with the 6·8·N bytes of the draws within the memory budget
    of ``fixpoint_rl.envs.checks.check_size_budget`` (larger N refused up front with the
    estimate); ``seed`` an int or Generator. Outside it, ``ValueError`` naming the argument.

    Args:
      pref: [X, K, K]; coverage: [X, K]; num_samples: N ≥ 1; seed: int or Generator;
      context_probs: [X] ν (uniform when omitted).

    Returns:
      (context, winner, loser): three [N] int64 arrays.
    """
    pref = _check_pref(pref)
    num_contexts, num_responses, _ = pref.shape
    coverage = check_distribution("coverage", coverage, shape=(num_contexts, num_responses))
    nu = _context_probs(context_probs, num_contexts)
    num_samples = check_int("num_samples", num_samples, low=1)
    check_size_budget("num_samples", num_samples, memory_bytes=6 * 8.0 * num_samples)
    rng = as_generator("seed", seed)
    context = rng.choice(num_contexts, size=num_samples, p=nu).astype(np.int64)
    cdf = np.cumsum(coverage, axis=1)
    cdf[:, -1] = 1.0
    first = _inverse_cdf(cdf[context], rng.random(num_samples))
    second = _inverse_cdf(cdf[context], rng.random(num_samples))
    first_wins = rng.random(num_samples) < pref[context, first, second]
    winner = np.where(first_wins, first, second).astype(np.int64)
    loser = np.where(first_wins, second, first).astype(np.int64)
    return context, winner, loser


def _inverse_cdf(cdf_rows, uniforms):
    """Index of the first cdf entry > u, row by row ([B, K], [B] → [B] int64)."""
    return np.minimum((cdf_rows <= uniforms[:, None]).sum(axis=1), cdf_rows.shape[1] - 1).astype(
        np.int64
    )


def empirical_pair_weights(context, winner, loser, num_contexts, num_responses):
    """Empirical distribution of triples: W[x, w, l] = #{(x, w, l)}/N. Returns [X, K, K]."""
    num_contexts = check_int("num_contexts", num_contexts, low=1)
    num_responses = check_int("num_responses", num_responses, low=2)
    context, winner, loser = _check_triples(context, winner, loser, num_contexts, num_responses)
    flat = (context * num_responses + winner) * num_responses + loser
    counts = np.bincount(flat, minlength=num_contexts * num_responses * num_responses)
    return (counts / len(context)).reshape(num_contexts, num_responses, num_responses)


def _check_triples(context, winner, loser, num_contexts, num_responses):
    arrays = []
    for name, values, high, high_name in (
        ("context", context, num_contexts, "num_contexts"),
        ("winner", winner, num_responses, "num_responses"),
        ("loser", loser, num_responses, "num_responses"),
    ):
        array = np.asarray(values)
        if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a non-empty 1-D integer array, got {array!r:.80}")
        if array.min() < 0 or array.max() >= high:
            raise ValueError(
                f"{name} must have entries in [0, {high_name} − 1 = {high - 1}], "
                f"got {array.min()}..{array.max()}"
            )
        arrays.append(array.astype(np.int64))
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise ValueError("context, winner and loser must have equal lengths")
    return tuple(arrays)


# ------------------------------------------------------------------------- population objective
def gpo_margins(logits, ref):
    """ρ[x, i, j] = log π/π_ref(y_i|x) − log π/π_ref(y_j|x) for every pair. [X, K] → [X, K, K]."""
    log_ratio = log_softmax(logits) - np.log(ref)
    return log_ratio[:, :, None] - log_ratio[:, None, :]


def gpo_population_loss(logits, ref, pair_weights, beta, kind):
    """Population GPO loss Σ W[x,w,l]·f(β·ρ[x,w,l]) and its gradient in the logits.

    Args:
      logits: [X, K]; ref: [X, K]; pair_weights: [X, K, K]; beta: > 0; kind: a GPO kind.

    Returns:
      (loss: float, gradient: [X, K]).
    """
    ref = _check_ref(ref)
    logits = as_float_array("logits", logits, shape=ref.shape)
    weights = _check_pair_weights(pair_weights, shape=(ref.shape[0], ref.shape[1], ref.shape[1]))
    kind = check_kind(kind)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    return _loss_and_gradient(logits, np.log(ref), weights, beta, kind)


def _loss_and_gradient(logits, log_ref, weights, beta, kind):
    log_ratio = logits - log_ref  # the softmax normaliser cancels in differences
    margin = log_ratio[:, :, None] - log_ratio[:, None, :]
    active = weights > 0
    margin = np.where(active, margin, 0.0)
    loss = float(np.sum(np.where(active, weights * gpo_loss(margin, beta, kind), 0.0)))
    slope = weights * gpo_loss_derivative(margin, beta, kind)
    return loss, slope.sum(axis=2) - slope.sum(axis=1)


def offline_regularizer(policy, ref, pair_weights):
    """The offline regulariser E_{(x,y,y')∼W}[ρ²] (GPO §4, the second-order term of E f(βρ)).

    Valid range: no numeric arguments; ``policy`` and ``ref`` full-support distributions (π down
    to 1e-300 stays finite: ρ is formed from logarithms), ``pair_weights`` ≥ 0.

    Args:
      policy: [X, K] π; ref: [X, K]; pair_weights: [X, K, K] (labels are irrelevant: ρ² is even).

    Returns:
      float ≥ 0.
    """
    ref = _check_ref(ref)
    policy = check_distribution("policy", policy, shape=ref.shape, full_support=True)
    weights = _check_pair_weights(pair_weights, shape=(ref.shape[0], ref.shape[1], ref.shape[1]))
    return _regularizer(np.log(policy) - np.log(ref), weights)


def _regularizer(log_ratio, weights):
    margin = log_ratio[:, :, None] - log_ratio[:, None, :]
    return float(np.sum(weights * margin**2))


def kl_to_reference(policy, ref, context_probs=None):
    """E_{x∼ν} KL(π(·|x) ‖ π_ref(·|x)). policy, ref: [X, K]; context_probs [X]. Returns float."""
    ref = _check_ref(ref)
    policy = check_distribution("policy", policy, shape=ref.shape)
    nu = _context_probs(context_probs, ref.shape[0])
    return float(nu @ kl_divergence(policy, ref))


def win_rate(policy, opponent, pref, context_probs=None):
    """E_{x∼ν} Σ_{i,j} π(i|x)·P(y_i ≻ y_j|x)·π'(j|x): the win rate of π against π'. Returns float."""
    pref = _check_pref(pref)
    shape = pref.shape[:2]
    policy = check_distribution("policy", policy, shape=shape)
    opponent = check_distribution("opponent", opponent, shape=shape)
    nu = _context_probs(context_probs, shape[0])
    return float(nu @ np.einsum("xi,xij,xj->x", policy, pref, opponent))


def _metrics_row(logits, log_ref, weights, beta, kind, nu, pref, target):
    policy = softmax(logits)
    ref = np.exp(log_ref)
    row = {
        "loss": _loss_and_gradient(logits, log_ref, weights, beta, kind)[0],
        "kl_to_ref": float(nu @ kl_divergence(policy, ref)),
        "offline_regularizer": _regularizer(logits - log_ref, weights),
    }
    if pref is not None:
        row["win_rate"] = float(nu @ np.einsum("xi,xij,xj->x", policy, pref, ref))
    if target is not None:
        row["kl"] = float(nu @ kl_divergence(target, policy))
    return row


def _prepare(ref, pair_weights, beta, kind, init_logits, pref, target, context_probs):
    ref = _check_ref(ref)
    shape3 = (ref.shape[0], ref.shape[1], ref.shape[1])
    weights = _check_pair_weights(pair_weights, shape=shape3)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    kind = check_kind(kind)
    log_ref = np.log(ref)
    logits = log_ref.copy() if init_logits is None else as_float_array(
        "init_logits", init_logits, shape=ref.shape, copy=True
    )
    if pref is not None:
        pref = _check_pref(pref, shape=shape3)
    if target is not None:
        target = check_distribution("target", target, shape=ref.shape, full_support=True)
    if context_probs is None:
        marginal = weights.sum(axis=(1, 2))
        nu = marginal if np.all(marginal > 0) else np.full(ref.shape[0], 1.0 / ref.shape[0])
    else:
        nu = _context_probs(context_probs, ref.shape[0])
    return ref, weights, beta, kind, log_ref, logits, pref, target, nu


def train_gpo(
    ref,
    pair_weights,
    beta,
    kind,
    *,
    steps=2000,
    learning_rate=1.0,
    num_checkpoints=50,
    init_logits=None,
    pref=None,
    target=None,
    context_probs=None,
):
    """Gradient descent on the population (or empirical) GPO loss: θ ← θ − η ∇L(θ).

    Valid range: ``beta`` β in [1e-4, 1e4] tested (any β > 0 accepted while the loss of β·margin
    stays finite); ``learning_rate`` η > 0 with η·β² ≤ 4 for a stable descent (the loss f(β·margin)
    has curvature ∝ β² and the pair weights sum to 1; divergence was measured from η·β² = 8 on, and
    a diverging run raises ``ValueError`` naming learning_rate); ``steps`` T ≥ 1 within the work
    budget of ``fixpoint_rl.envs.checks.check_size_budget``; ``num_checkpoints`` C ≥ 2. Outside
    it, ``ValueError`` naming the argument and value.

    Args:
      ref: [X, K] π_ref; pair_weights: [X, K, K] (population W or ``empirical_pair_weights``);
      beta: > 0; kind: a GPO kind; steps: T ≥ 1; learning_rate: η > 0;
      num_checkpoints: C ≥ 2 metric rows (log-spaced iterations, 0 and T included);
      init_logits: [X, K] starting logits (default log π_ref);
      pref: [X, K, K] golden preference for the ``win_rate`` metric (win rate against π_ref);
      target: [X, K] a closed-form optimum for the ``kl`` metric, KL(target ‖ π);
      context_probs: [X] ν for averaging metrics (default: the context marginal of W).

    Returns:
      SolverResult: ``final`` [X, K] policy; metrics iteration, loss, kl_to_ref (KL(π‖π_ref)),
      offline_regularizer (E_W ρ²), and win_rate / kl when ``pref`` / ``target`` are given;
      ``extras["logits"]``.
    """
    ref, weights, beta, kind, log_ref, logits, pref, target, nu = _prepare(
        ref, pair_weights, beta, kind, init_logits, pref, target, context_probs
    )
    steps = check_int("steps", steps, low=1)
    # one exact gradient step: the [X, K, K] pair weights
    check_size_budget("steps", steps, work=float(steps) * weights.size * 20)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    num_checkpoints = check_int("num_checkpoints", num_checkpoints, low=2)
    check_size_budget("num_checkpoints", num_checkpoints, memory_bytes=8.0 * 16 * num_checkpoints)
    marks = np.unique(np.concatenate([[0], np.geomspace(1, steps, num_checkpoints - 1).astype(int)]))
    rows = []
    start = time.perf_counter()
    for t in range(steps + 1):
        try:
            # overflow is detected (gpo_loss's own check, non-finite logits below) and named
            with np.errstate(over="ignore", invalid="ignore"):
                if t == marks[len(rows)] if len(rows) < len(marks) else False:
                    rows.append({"iteration": t,
                                 **_metrics_row(logits, log_ref, weights, beta, kind, nu, pref, target)})
                if t == steps:
                    break
                logits -= learning_rate * _loss_and_gradient(logits, log_ref, weights, beta, kind)[1]
        except ValueError as error:  # the loss of β·margin overflowed: only a diverging iterate gets there
            if t == 0:
                raise
            raise ValueError(
                f"learning_rate={learning_rate!r} with beta={beta!r} diverged (the margins overflow at "
                f"step {t}; learning_rate·β² = {learning_rate * beta**2:.3g}, stable for ≤ 4); lower it"
            ) from error
        if not np.all(np.isfinite(logits)):
            raise ValueError(
                f"learning_rate={learning_rate!r} with beta={beta!r} diverged (non-finite logits at step "
                f"{t}; learning_rate·β² = {learning_rate * beta**2:.3g}, stable for ≤ 4); lower it"
            )
    wall = time.perf_counter() - start
    return SolverResult(
        final=softmax(logits),
        metrics={key: np.array([row[key] for row in rows]) for key in rows[0]},
        wall_time_s=wall,
        compile_time_s=0.0,
        config={"solver": "train_gpo", "beta": beta, "kind": kind, "steps": steps,
                "learning_rate": learning_rate, "num_checkpoints": num_checkpoints},
        extras={"logits": logits},
    )


def _hessian(logits, log_ref, weights, beta, kind):
    """Per-context Hessian of the GPO loss in the logits: a weighted graph Laplacian [X, K, K]."""
    log_ratio = logits - log_ref
    margin = np.where(weights > 0, log_ratio[:, :, None] - log_ratio[:, None, :], 0.0)
    curvature = weights * gpo_loss_second_derivative(margin, beta, kind)
    both = curvature + np.swapaxes(curvature, 1, 2)
    return both.sum(axis=2)[:, :, None] * np.eye(logits.shape[1]) - both


def solve_gpo(
    ref,
    pair_weights,
    beta,
    kind,
    *,
    max_iterations=200,
    tolerance=1e-12,
    init_logits=None,
    pref=None,
    target=None,
    context_probs=None,
):
    """Minimise the population (or empirical) GPO loss by damped Newton steps, from θ = log π_ref.

    θ ← θ − s·H⁺∇L, with H the per-context Hessian (a weighted graph Laplacian of the pairs, its
    eigenvalues taken in absolute value so the non-convex Savage loss still descends), H⁺ its
    pseudo-inverse (the loss is invariant to adding a constant per context) and s from Armijo
    backtracking. ``hinge`` has no curvature: it uses backtracking gradient steps instead and is
    accurate to about 1e-6 only. Every step lies in the span of gradients, which sum to zero per
    context and vanish on responses outside the data, so those logits never move.

    Same arguments and metrics as :func:`train_gpo` (one metric row per Newton iteration), plus
    ``max_iterations`` and ``tolerance`` (stop when max |∇L| ≤ tolerance, or when a step no longer
    changes the logits in float64; both count as converged).

    Valid range: ``beta`` β in [1e-4, 1e4] tested (any β > 0 accepted while the loss of β·margin
    stays finite); ``max_iterations`` ≥ 1 within the work budget (each iteration an [X·K]
    eigendecomposition); ``tolerance`` > 0 (a tolerance below float64 resolution just stops at a
    stationary point in floating point). Outside it, ``ValueError`` naming the argument and value.

    Returns:
      SolverResult with ``final`` [X, K]; ``extras["logits"]``, ``extras["converged"]``,
      ``extras["gradient_norm"]``.
    """
    ref, weights, beta, kind, log_ref, logits, pref, target, nu = _prepare(
        ref, pair_weights, beta, kind, init_logits, pref, target, context_probs
    )
    max_iterations = check_int("max_iterations", max_iterations, low=1)
    # one Newton step: gradient and Hessian over [X, K, K] weights and an [X·K]-sized solve
    n_vars = float(ref.size)
    check_size_budget("max_iterations", max_iterations,
                      work=float(max_iterations) * (weights.size * 20 + n_vars**3))
    tolerance = check_scalar("tolerance", tolerance, low=0.0, low_inclusive=False)
    rows = [{"iteration": 0, **_metrics_row(logits, log_ref, weights, beta, kind, nu, pref, target)}]
    start = time.perf_counter()
    loss, gradient = _loss_and_gradient(logits, log_ref, weights, beta, kind)
    converged = False
    for iteration in range(1, max_iterations + 1):
        if np.max(np.abs(gradient)) <= tolerance:
            converged = True
            break
        direction = -gradient
        if kind != "hinge":
            eigenvalues, vectors = np.linalg.eigh(_hessian(logits, log_ref, weights, beta, kind))
            size = np.abs(eigenvalues)
            cutoff = 1e-12 * max(float(size.max()), 1e-300)
            inverse = np.where(size > cutoff, 1.0 / np.where(size > cutoff, size, 1.0), 0.0)
            newton = -np.einsum("xij,xj->xi", vectors, inverse * np.einsum("xji,xj->xi", vectors, gradient))
            if np.sum(newton * gradient) < 0:
                direction = newton
        slope = float(np.sum(direction * gradient))
        step = 1.0
        while True:
            candidate = logits + step * direction
            new_loss, new_gradient = _loss_and_gradient(candidate, log_ref, weights, beta, kind)
            if new_loss <= loss + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        if step < 1e-12 and new_loss > loss:
            break  # no further decrease possible in floating point
        if np.max(np.abs(candidate - logits)) <= 1e-14 * (1.0 + np.max(np.abs(logits))):
            converged = True  # the step is below float64 resolution: stationary in floating point
            break
        logits, loss, gradient = candidate, new_loss, new_gradient
        rows.append({"iteration": iteration,
                     **_metrics_row(logits, log_ref, weights, beta, kind, nu, pref, target)})
    else:
        converged = bool(np.max(np.abs(gradient)) <= tolerance)
    wall = time.perf_counter() - start
    return SolverResult(
        final=softmax(logits),
        metrics={key: np.array([row[key] for row in rows]) for key in rows[0]},
        wall_time_s=wall,
        compile_time_s=0.0,
        config={"solver": "solve_gpo", "beta": beta, "kind": kind,
                "max_iterations": max_iterations, "tolerance": tolerance},
        extras={"logits": logits, "converged": converged,
                "gradient_norm": float(np.max(np.abs(gradient)))},
    )


def matched_beta(ref, pair_weights, beta, kind, other_kind, *, bracket=(0.05, 50.0), iterations=40):
    """The β' at which ``other_kind`` reaches the same KL(π‖π_ref) as ``kind`` at ``beta``.

    Both population optima are found with :func:`solve_gpo`; β' by bisection on log β' (KL of the
    optimum decreases in β). GPO §4 predicts β'/β ≈ [f″/|f′|](kind)/[f″/|f′|](other_kind), e.g.
    ≈ 2 for (squared → logistic) when the policy stays close to π_ref.

    Returns:
      float β'.
    """
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    iterations = check_int("iterations", iterations, low=1)
    low, high = (check_scalar("bracket", b, low=0.0, low_inclusive=False) for b in bracket)
    if not low < high:
        raise ValueError(f"bracket must be increasing, got {bracket!r}")
    goal = solve_gpo(ref, pair_weights, beta, kind).last("kl_to_ref")
    log_low, log_high = np.log(low * beta), np.log(high * beta)
    for _ in range(iterations):
        mid = 0.5 * (log_low + log_high)
        kl = solve_gpo(ref, pair_weights, float(np.exp(mid)), other_kind).last("kl_to_ref")
        if kl > goal:
            log_low = mid  # too little regularisation: raise β'
        else:
            log_high = mid
    return float(np.exp(0.5 * (log_low + log_high)))
