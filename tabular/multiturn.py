"""MTPO and MTPO-τ on layered dialogue games (Shani et al., NeurIPS 2024;
arXiv 2405.14655, eqs. 1–2, Theorems 4.2 and B.1–B.3).

Shapes: N states, N_dec decision states, A actions, X contexts, H horizon, T iterations. Policies
are [N_dec, A] arrays (rows are distributions over the agent's actions at each decision state);
the layout of a :class:`~fixpoint_rl.envs.dialogue.DialogueGame` is in its module docstring.

* :func:`preference_q_values` — Q^{π,π'}_α and V by backward induction (Shani et al. 2024, arXiv 2405.14655): terminal
  V(x_{H+1}) = P(x_{H+1} ≻ π') with π' rolled out from the initial state;
  Q(x_h, y) = E V(x_{h+1}) − α KL(π‖μ)[x_h], V(x_h) = E_{y~π} Q(x_h, y).
* :func:`trajectory_kl` — KL_p(π‖π') = E_π Σ_h KL(π‖π')[x_h] (Lemma 3.1), by a forward pass.
* :func:`multiturn_preference` — P_α(π ≻ π') = P(π ≻ π') − α KL_p(π‖μ) + α KL_p(π'‖μ).
* :func:`multiturn_exploitability` — max_{π'} P_α(π' ≻ π) − 1/2 by soft backward induction
  (the regularized best response); 0 exactly at π*_α (game value 1/2, Lemma 3.2).
* :func:`mtpo` — eq. (2): π_{t+1} ∝ μ^{αη_t} π_t^{1−αη_t} exp(η_t Q^{π_t,π_t}_α).
* :func:`mtpo_tau` — multi-turn Nash-MD: π^α_t ∝ π_t^{1−η_tα} μ^{η_tα},
  π_{t+1} ∝ π^α_t exp(η_t Q^{π^α_t,π^α_t}_α).
  Both run exact, with ``n_samples`` opponent final states per context, or with
  ``sampling="paired_trajectories"`` (the paper's estimator: one trajectory pair and one Bernoulli
  preference per context and iteration; ``values="exact" | "monte_carlo"``, see
  ``_paired_q_estimate``; a plain numpy loop over contexts, meant for small games).
* :func:`multiturn_regularized_nash` — the oracle π*_α: Anderson-accelerated damped soft
  best-response iteration π ← π^{1−λ}·BR_α(π)^λ (BR_α(π) ∝ μ exp(Q*_π/α) with the *soft-optimal*
  continuation values, not MTPO's on-policy Q), certified by exploitability ≤ ``tol``.
* Baselines: :func:`reward_rl`, :func:`multiturn_rlhf`, :func:`single_turn_rlhf`,
  :func:`single_turn_nash_md`, :func:`learned_preference_game` (see their docstrings).

Valid range (every function here; each function's docstring states its own): α > 0 and at least
the smallest normal float64 2.2e-308 where a soft best response divides by α (exercised down to
1e-4: π*_α then comes from the Newton continuation, certified by its exploitability; below 1e-4 the
oracle raises ValueError naming alpha when it cannot certify), policies row-stochastic (zeros allowed where μ > 0),
l2 > 0 for the Bradley–Terry fits, sample counts ≥ 1 and iterations ≥ 1 within the work budget of
``fixpoint_rl.envs.checks.check_size_budget`` (refused up front beyond it, with the estimate).
Inside it every result is finite (the ``eta``/``kl_mixture`` columns included); outside it a
``ValueError`` names the argument and value.
"""

from __future__ import annotations

import numpy as np

from fixpoint_rl.envs.checks import (
    as_float_array,
    as_generator,
    check_choice,
    check_distribution,
    check_int,
    check_scalar,
    check_size_budget,
    describe,
)
from fixpoint_rl.tabular._jit import Stopwatch
from fixpoint_rl.tabular._kernels import mtpo as _k
from fixpoint_rl.tabular._threads import parallel_worthwhile
from fixpoint_rl.tabular.core.mirror import kl_divergence
from fixpoint_rl.tabular.core.result import SolverResult

__all__ = [
    "preference_q_values",
    "trajectory_kl",
    "multiturn_preference",
    "multiturn_exploitability",
    "multiturn_regularized_nash",
    "soft_best_response",
    "mtpo",
    "mtpo_tau",
    "mtpo_theorem_bound",
    "reward_rl",
    "multiturn_rlhf",
    "single_turn_rlhf",
    "single_turn_nash_md",
    "learned_preference_game",
    "final_state_distribution",
]

SCHEDULES = ("theorem", "constant")
SAMPLINGS = ("opponent_final_states", "paired_trajectories")
VALUE_ESTIMATES = ("exact", "monte_carlo")
# constant c of the paired estimators (the game value ½): Q̂ = c + (signal − c)/(importance weight)
# is unbiased for any c; c = ½ centres the Bernoulli outcome and cuts the variance
PAIRED_BASELINE = 0.5
PARALLEL_PAIRS = 100_000


# --------------------------------------------------------------------------------------------
# validation and shared arrays
# --------------------------------------------------------------------------------------------


class _Arrays:
    __slots__ = ("game", "starts", "nxt", "nxt32", "layer_starts", "probs", "log_ref", "pref",
                 "pref_starts", "final_starts", "n_dec", "N", "X", "A", "rho")

    def __init__(self, game):
        from fixpoint_rl.envs.dialogue import DialogueGame

        if not isinstance(game, DialogueGame):
            raise ValueError(f"game must be a DialogueGame, got {describe(game)}")
        self.game = game
        self.starts = np.asarray(game.transition_starts)
        self.nxt = np.asarray(game.transition_next)
        # 32-bit unsigned successor indices for the backward sweep (half the index bytes
        # streamed; unsigned indexing skips Numba's negative-index test)
        self.nxt32 = self.nxt.astype(np.uint32) if game.num_states < 2**32 else self.nxt
        self.layer_starts = np.asarray(game.layer_starts, dtype=np.int64)
        self.probs = np.asarray(game.transition_probs)
        self.log_ref = np.log(game.reference)
        self.pref = np.asarray(game.preference_values)
        self.pref_starts = game.preference_starts
        self.final_starts = np.asarray(game.final_starts)
        self.n_dec = game.num_decision_states
        self.N = game.num_states
        self.X = game.num_contexts
        self.A = game.num_actions
        self.rho = np.asarray(game.context_probs)

    def policy(self, name, pi, full_support=False):
        return check_distribution(
            name, pi, shape=(self.n_dec, self.A), full_support=full_support, copy=True
        )

    def reach(self, pi):
        return _k._forward_reach(pi, self.starts, self.nxt, self.probs, self.N, self.X)

    def terminal_against(self, opponent, values=None):
        values = np.zeros(self.N) if values is None else values
        reach = self.reach(opponent)
        _k._terminal_values(reach, self.pref, self.pref_starts, self.final_starts, self.n_dec, values)
        return values

    def backward(self, pi, alpha, values, mode=_k.EVALUATE, eta=0.0, new_policy=None):
        q = np.empty((self.n_dec, self.A))
        kl = np.empty(self.n_dec)
        out = np.empty((self.n_dec, self.A)) if new_policy is None else new_policy
        _k._backward_layers(pi, _log_policy(pi), self.log_ref, alpha, eta, mode, self.starts,
                            self.nxt32, self.probs, values, q, kl, out, self.layer_starts)
        return q, kl, out

    def context_average(self, per_state):
        return float(np.dot(self.rho, per_state[: self.X]))


def _log_policy(pi: np.ndarray) -> np.ndarray:
    """log π by one vectorised np.log (−inf where π = 0; the kernels never read those entries)."""
    with np.errstate(divide="ignore"):
        return np.log(pi)


def _log_normalize(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))


# Smallest α accepted where the soft best response divides by α: the smallest normal float64
# (≈ 2.2e-308). Below it (subnormal α) Q/α overflows to inf and the soft-max becomes NaN.
ALPHA_MIN = float(np.finfo(np.float64).tiny)
# Below this α the Newton continuation stops at this stage and takes one last Newton solve at the
# requested α: π*_α differs from π*_{1e-30} by O(α) ≤ 1e-30 in the mixed probabilities (and the
# others underflow in both), far below rounding; the certificate is still checked at α itself.
CONTINUATION_FLOOR = 1e-30
# multiturn_regularized_nash is certified (tested on random games) for α ≥ 1e-4; below it the
# continuation is attempted, and a failure to certify raises ValueError naming alpha
ORACLE_ALPHA_MIN = 1e-4


def _alpha(alpha):
    alpha = check_scalar("alpha", alpha, low=0.0, low_inclusive=False)
    if alpha < ALPHA_MIN:
        raise ValueError(
            f"alpha must be ≥ {ALPHA_MIN!r} (the smallest normal float64: Q/α overflows below), "
            f"got {alpha!r}"
        )
    return alpha


def _rounding_floor(arrays, alpha):
    """Float64 error of an exploitability that contains α·KL_p terms: α times a few ulps of the
    per-trajectory sum of H log-ratios of magnitude ≤ 1 + max|log μ| (each rounded to ~ε). For
    H = 2 and μ_min ≈ 0.05 it is ~3e-10 at α = 10⁴ and ~3e-2 at α = 10¹² (the measured
    exploitability of π*_α there was ±1e-4), which is why exploitability can come out slightly
    negative at large α. The certificate of :func:`multiturn_regularized_nash` allows it."""
    log_mu = float(np.max(np.abs(arrays.log_ref)))
    return 16.0 * np.finfo(np.float64).eps * alpha * arrays.game.horizon * (1.0 + log_mu)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def final_state_distribution(game, pi):
    """Reach probabilities of the final states under π, conditional on the context: [F].

    Valid range: no numeric arguments; pi [N_dec, A] row-stochastic.
    """
    arrays = _Arrays(game)
    pi = arrays.policy("pi", pi)
    return arrays.reach(pi)[arrays.n_dec :]


def preference_q_values(game, pi, opponent, alpha):
    """Q^{π,π'}_α [N_dec, A] and V^{π,π'}_α [N] by backward induction (MTPO §3.2).

    V(x_{H+1}) = P(x_{H+1} ≻ π') with π' rolled out from the initial state of the context;
    Q(x_h, y) = Σ p(x'|x_h, y) V(x') − α KL(π‖μ)[x_h]; V(x_h) = Σ_y π(y|x_h) Q(x_h, y).
    α ≥ 0 (α = 0 gives the unregularized values).

    Valid range: alpha ≥ 0 (finite; 0 gives the unregularized values); pi, opponent [N_dec, A]
    row-stochastic (zeros allowed where μ > 0).
    """
    arrays = _Arrays(game)
    pi = arrays.policy("pi", pi)
    opponent = arrays.policy("opponent", opponent)
    alpha = check_scalar("alpha", alpha, low=0.0)
    values = arrays.terminal_against(opponent)
    q, _, _ = arrays.backward(pi, alpha, values)
    return q, values


def trajectory_kl(game, pi, mu):
    """KL_p(π‖π') between trajectory distributions = E_{π,p} Σ_h KL(π‖π')[x_h] (Lemma 3.1),
    averaged over contexts c ~ ρ. ``mu`` must be positive wherever ``pi`` is (else ValueError).

    Valid range: no numeric arguments; pi, mu [N_dec, A] row-stochastic with mu > 0 wherever pi > 0
    (else KL_p is infinite and ValueError names mu).
    """
    arrays = _Arrays(game)
    pi = arrays.policy("pi", pi)
    mu = arrays.policy("mu", mu)
    if np.any((pi > 0) & (mu <= 0)):
        raise ValueError("mu must be positive wherever pi is (KL_p would be infinite)")
    return _trajectory_kl(arrays, pi, mu)


def _trajectory_kl(arrays, pi, mu):
    reach = arrays.reach(pi)[: arrays.n_dec]
    # μ floored at the smallest normal float64: an iterate whose probability underflowed to 0
    # (huge η Q̂ at small α) gives a large finite KL instead of +inf (public callers have
    # already checked that μ > 0 wherever π > 0, so for them the floor changes nothing)
    per_state = np.asarray(kl_divergence(pi, np.maximum(mu, np.finfo(np.float64).tiny)))
    # reach is conditional on the context; weight each state by ρ(its context)
    weights = arrays.rho[np.asarray(arrays.game.state_context[: arrays.n_dec])]
    return float(np.sum(weights * reach * per_state))


def multiturn_preference(game, pi, opponent, alpha=0.0):
    """P_α(π ≻ π') = E_c E P(x ≻ x' | c) − α KL_p(π‖μ) + α KL_p(π'‖μ) (MTPO §3).

    Valid range: alpha ≥ 0 (finite); pi, opponent [N_dec, A] row-stochastic.
    """
    arrays = _Arrays(game)
    pi = arrays.policy("pi", pi)
    opponent = arrays.policy("opponent", opponent)
    alpha = check_scalar("alpha", alpha, low=0.0)
    return _multiturn_preference(arrays, pi, opponent, alpha)


def _multiturn_preference(arrays, pi, opponent, alpha):
    values = arrays.terminal_against(opponent)
    reach = arrays.reach(pi)
    weights = arrays.rho[np.asarray(arrays.game.state_context[arrays.n_dec :])]
    raw = float(np.sum(weights * reach[arrays.n_dec :] * values[arrays.n_dec :]))
    mu = arrays.game.reference
    return raw - alpha * _trajectory_kl(arrays, pi, mu) + alpha * _trajectory_kl(arrays, opponent, mu)


def soft_best_response(game, terminal_values, alpha):
    """argmax_π E_π[r(x_{H+1})] − α KL_p(π‖μ) by soft backward induction.

    Args:
      terminal_values: [F] r(x_{H+1}).
    Returns:
      (policy [N_dec, A] ∝ μ exp(Q̄/α), optimal values V* [N]).

    Valid range: alpha ≥ 2.2e-308 (the smallest normal float64; tested from 1e-6 up);
    terminal_values [F] finite.
    """
    arrays = _Arrays(game)
    alpha = _alpha(alpha)

    r = as_float_array("terminal_values", terminal_values, shape=(arrays.N - arrays.n_dec,))
    values = np.zeros(arrays.N)
    values[arrays.n_dec :] = r
    _, _, policy = arrays.backward(arrays.game.reference, alpha, values, mode=_k.SOFT_BEST_RESPONSE)
    return policy, values


def _exploitability(arrays, pi, alpha):
    values = arrays.terminal_against(pi)
    _, _, best = arrays.backward(pi, alpha, values, mode=_k.SOFT_BEST_RESPONSE)
    best_value = arrays.context_average(values)
    return best_value + alpha * _trajectory_kl(arrays, pi, arrays.game.reference) - 0.5, best


def multiturn_exploitability(game, pi, alpha):
    """max_{π'} P_α(π' ≻ π) − 1/2 ≥ 0, computed exactly by soft backward induction; zero iff π = π*_α.

    Valid range: alpha ≥ 2.2e-308 (the smallest normal float64: the soft best response divides by
    α), tested from 1e-4 up; pi [N_dec, A] row-stochastic. At large alpha the value carries an
    absolute float64 error of about 16·ε·alpha·H·(1 + max|log μ|) (≈ 1e-4 at alpha = 1e12), so it
    can come out slightly negative there.
    """
    arrays = _Arrays(game)
    pi = arrays.policy("pi", pi)
    return float(_exploitability(arrays, pi, _alpha(alpha))[0])


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------


def _to_policy(arrays, z):
    z = z.reshape(arrays.n_dec, arrays.A)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _best_response_log(arrays, z, alpha):
    """(log BR_α(softmax z) normalised and flattened, exploitability of softmax z)."""
    gap, best = _exploitability(arrays, _to_policy(arrays, z), alpha)
    return _log_normalize(np.log(np.maximum(best, 1e-300))).ravel(), gap


def _anderson_damped(arrays, alpha, z, tol, max_iterations, damping):
    """Damped soft best-response iteration z ← (1−λ)z + λ log BR(z) with Anderson acceleration.
    Returns (z, exploitability, certified)."""
    lam = 0.25 if damping is None else damping
    history_z, history_f = [], []
    memory = 8
    gap = np.inf
    checkpoint_gap, window = np.inf, 50
    for iteration in range(max_iterations):
        target, gap = _best_response_log(arrays, z, alpha)
        g = _log_normalize(((1 - lam) * z + lam * target).reshape(arrays.n_dec, arrays.A)).ravel()
        f = g - z
        if iteration % window == window - 1:
            # the gap did not halve over a window: the damped map is not contracting; damp more
            if damping is None and gap > 0.5 * checkpoint_gap and gap > tol:
                lam *= 0.5
                history_z, history_f = [], []
                g = _log_normalize(((1 - lam) * z + lam * target).reshape(arrays.n_dec, arrays.A)).ravel()
                f = g - z
            checkpoint_gap = gap
        # certificate reached; keep polishing until the fixed-point residual is at rounding level
        if gap <= tol and np.max(np.abs(f)) <= 1e-13:
            return z, gap, True
        history_z.append(z.copy())
        history_f.append(f.copy())
        if len(history_z) > memory + 1:
            history_z.pop(0)
            history_f.pop(0)
        if len(history_f) >= 2:
            dF = np.stack([history_f[i + 1] - history_f[i] for i in range(len(history_f) - 1)], axis=1)
            dZ = np.stack([history_z[i + 1] - history_z[i] for i in range(len(history_z) - 1)], axis=1)
            gamma, *_ = np.linalg.lstsq(dF, f, rcond=None)
            candidate = _log_normalize((z + f - (dZ + dF) @ gamma).reshape(arrays.n_dec, arrays.A)).ravel()
            if np.all(np.isfinite(candidate)):
                if _exploitability(arrays, _to_policy(arrays, candidate), alpha)[0] < gap:
                    z = candidate
                    continue
            history_z, history_f = [z.copy()], [f.copy()]
        z = g
    return z, gap, gap <= tol


def _newton(arrays, alpha, z, iterations=40):
    """Newton's method on F(z) = z − log BR_α(softmax z) = 0 (central-difference Jacobian,
    backtracking on ‖F‖₂). For small games (n = N_dec·A ≤ 5000)."""
    n = z.size

    def residual(z):
        return z - _best_response_log(arrays, z, alpha)[0]

    f = residual(z)
    h = 1e-6
    for _ in range(iterations):
        if np.max(np.abs(f)) <= 1e-14:
            break
        jac = np.empty((n, n))
        for j in range(n):
            e = np.zeros(n)
            e[j] = h
            jac[:, j] = (residual(z + e) - residual(z - e)) / (2 * h)
        try:
            step = np.linalg.solve(jac, f)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(jac, f, rcond=None)[0]
        norm = np.linalg.norm(f)
        scale = 1.0
        while scale > 1e-6:
            candidate = _log_normalize((z - scale * step).reshape(arrays.n_dec, arrays.A)).ravel()
            f_new = residual(candidate)
            if np.all(np.isfinite(f_new)) and np.linalg.norm(f_new) < norm:
                break
            scale *= 0.5
        else:
            break
        z, f = candidate, f_new
    return z


def _continuation(arrays, z, stages, refinements=60):
    """Newton along the continuation path ``stages`` (decreasing α), warm-started stage by stage.

    A stage whose Newton solve does not reach a fixed-point residual ≤ 1e-9 (max-norm of
    z − log BR_α(z)) is retried from the last converged point with the geometric midpoint α
    inserted (bisection in log α; at most ``refinements`` extra solves in all). Without it the
    factor-2 steps jumped off the solution path on random layered games near α ≈ 4e-4 (measured:
    exploitability 2e-3 at α = 1e-4 on random_layered_game(horizon=2, num_contexts=2, seed=2))."""
    current = None
    for target in stages:
        stage = target
        while True:
            candidate = _newton(arrays, stage, z)
            residual = np.max(np.abs(candidate - _best_response_log(arrays, candidate, stage)[0]))
            if residual <= 1e-9 or current is None or current / stage < 1.001 or refinements <= 0:
                current, z = stage, candidate
                if stage == target:
                    break
                stage = target
            else:
                refinements -= 1
                stage = float(np.sqrt(current * stage))
    return z


def multiturn_regularized_nash(game, alpha, *, tol=1e-10, max_iterations=2_000, damping=None):
    """The unique Nash equilibrium π*_α of the α-regularized multi-turn game [N_dec, A].

    Method (independent of :func:`mtpo`): π*_α is the fixed point of its own regularized best
    response, π = BR_α(π) ∝ μ exp(Q*_π/α) (Lemma 3.2, with Q*_π the soft-optimal continuation
    against π, computed by soft backward induction). Two solvers of that fixed-point equation:

    1. damped iteration z ← (1−λ) z + λ log BR_α(softmax z) on log-policies (λ = ``damping``,
       default 0.25, halved whenever the exploitability fails to halve over 50 iterations) with
       Anderson acceleration (memory 8), at most ``max_iterations`` steps (300 for small games);
    2. if that does not certify and N_dec·A ≤ 5000: Newton's method (finite-difference Jacobian)
       along a continuation path α_k = α·2^k (k = K … 0, α·2^K ≥ 1; below α = 1e-30 the path
       stops at 1e-30 and adds α itself), warm-started stage by stage, with a stage bisected in
       log α when Newton does not converge there; then step 1 again from Newton's answer.

    The answer is returned only once certified: exploitability ≤ ``tol`` (and log-policy
    fixed-point residual ≤ 1e-13 when step 1 converges).

    Raises:
      ValueError: below the certified range (alpha < 1e-4) when the certificate is not reached.
      RuntimeError: if the certificate is not reached inside the certified range.

    Valid range: alpha ≥ 1e-4 is the certified range (tested on random games; below it, down to
    2.2e-308, the continuation is attempted and a failure to certify raises ValueError naming
    alpha); tol > 0 (the certificate is exploitability ≤ tol + the float64 rounding floor of
    alpha·KL_p, which matters from alpha ≈ 1e4 on); max_iterations ≥ 1 (an int, within the work
    budget); damping in (0, 1] or None.
    """
    arrays = _Arrays(game)
    alpha = _alpha(alpha)
    tol = check_scalar("tol", tol, low=0.0, low_inclusive=False)
    max_iterations = check_int("max_iterations", max_iterations, low=1)
    # each damped step: a soft best response (backward sweep over the N·A pairs) and up to two
    # exploitability evaluations
    check_size_budget("max_iterations", max_iterations,
                      work=3.0 * max_iterations * float(arrays.N) * arrays.A)
    if damping is not None:
        damping = check_scalar("damping", damping, low=0.0, high=1.0, low_inclusive=False)
    # at large α the computed exploitability carries the float64 error of α·KL_p (≈ 1e-4 at
    # α = 10¹²): certify against tol plus that floor (the damped path also needs a log-policy
    # fixed-point residual ≤ 1e-13, which is scale-free)
    certify = tol + _rounding_floor(arrays, alpha)
    start = _log_normalize(np.log(np.asarray(arrays.game.reference))).ravel()
    first = min(max_iterations, 300) if start.size <= 5000 else max_iterations
    z, gap, certified = _anderson_damped(arrays, alpha, start, certify, first, damping)
    if certified:
        return _to_policy(arrays, z)
    if start.size <= 5000:
        solve_alpha = max(alpha, CONTINUATION_FLOOR)
        top = int(np.ceil(max(np.log2(1.0 / solve_alpha), 0.0)))
        stages = [solve_alpha * 2.0**k for k in range(top, -1, -1)]
        if solve_alpha > alpha:
            stages.append(alpha)
        z = _continuation(arrays, start, stages)
        # Newton's answer may already carry the certificate; at tiny α (near-deterministic π*_α)
        # the damped log-space iteration would only drift away from it
        newton_gap = _exploitability(arrays, _to_policy(arrays, z), alpha)[0]
        if newton_gap <= certify:
            return _to_policy(arrays, z)
        z, gap, certified = _anderson_damped(arrays, alpha, z, certify, max_iterations, damping)
        if certified or gap <= certify:
            return _to_policy(arrays, z)
    if alpha < ORACLE_ALPHA_MIN:
        # below the documented range the Newton continuation is tried but not guaranteed (the
        # best-response map's Jacobian grows like 1/α); refusing names the argument
        raise ValueError(
            f"alpha={alpha!r} is below the oracle's certified range (α ≥ {ORACLE_ALPHA_MIN:g}) "
            f"and the continuation did not certify exploitability ≤ {certify:.3g} here "
            f"(last {gap:.3g}); raise alpha or pass reference_solution"
        )
    raise RuntimeError(
        f"multiturn_regularized_nash did not certify exploitability ≤ {certify:.3g} "
        f"(last {gap:.3g})"
    )


# --------------------------------------------------------------------------------------------
# MTPO / MTPO-τ
# --------------------------------------------------------------------------------------------


def mtpo_theorem_bound(game, alpha, t, variant="mtpo"):
    """Theorem 4.2 / B.2 bounds at iteration t (array-valued in t):
    MTPO: KL_p(π*‖π_t) ≤ 32 H Q²/(α²(t+1)); MTPO-τ: KL_p(π*‖π^α_t) ≤ 9 H Q²/(α²(t+1)),
    with Q = max{4αH log(1/μ_min), 1}.

    Valid range: alpha ≥ 2.2e-308 as long as the bound fits in float64 (below α ≈ 1e-154 it
    overflows and ValueError names alpha; it is vacuous there anyway); t ≥ 0 (scalar or 1-D).
    """
    arrays = _Arrays(game)
    alpha = _alpha(alpha)
    variant = check_choice("variant", variant, ("mtpo", "mtpo_tau"))
    t = as_float_array("t", t, ndim=(0, 1), nonnegative=True)
    H = arrays.game.horizon
    qmax = max(4 * alpha * H * np.log(1.0 / float(np.min(arrays.game.reference))), 1.0)
    constant = 32.0 if variant == "mtpo" else 9.0
    # in log space: at α ≲ 1e-154 the bound exceeds the float64 range (it is vacuous long
    # before: it already exceeds 1 for α < ~17·√H at t = 0)
    log_bound = np.log(constant * H) + 2.0 * np.log(qmax) - 2.0 * np.log(alpha) - np.log1p(t)
    if np.any(log_bound > np.log(np.finfo(np.float64).max)):
        raise ValueError(
            f"alpha={alpha!r} is too small for a float64 bound: 32HQ²/(α²(t+1)) overflows "
            f"(at t={describe(t.min() if t.ndim else t)}); the bound is vacuous there anyway"
        )
    return constant * H * (qmax / alpha) ** 2 / (t + 1.0)


def _checkpoint_list(iterations, checkpoints, checkpoint_every):
    if checkpoint_every is not None:
        every = check_int("checkpoint_every", checkpoint_every, low=1)
        points = np.arange(0, iterations + 1, every)
    else:
        count = check_int("checkpoints", checkpoints, low=2)
        if count >= iterations + 1:
            # at most T + 1 distinct checkpoints exist (0 … T): a count that large records them all
            points = np.arange(iterations + 1)
        else:
            points = np.concatenate([[0], np.round(np.geomspace(1, iterations, count - 1))])
    return np.unique(np.concatenate([points, [iterations]]).astype(np.int64))


def _etas(alpha, iterations, eta, schedule, variant):
    schedule = check_choice("schedule", schedule, SCHEDULES)
    if schedule == "theorem":
        if eta is not None:
            raise ValueError(f"eta must be None with schedule='theorem' (η_t = 2/(α(t+2))), got {eta!r}")
        return 2.0 / (alpha * (np.arange(iterations, dtype=np.float64) + 2.0))
    if eta is None:
        raise ValueError("eta must be given with schedule='constant', got None")
    eta = check_scalar("eta", eta, low=0.0, low_inclusive=False)
    if eta * alpha > 1.0:
        raise ValueError(f"eta * alpha must be ≤ 1, got eta={eta!r}, alpha={alpha!r}")
    return np.full(iterations, eta)


def _sample_path(arrays, policy, context, rng):
    """One trajectory of ``policy`` from x_1 of ``context``: (states [H], actions [H], final state).
    Per step: one uniform for the action (inverse CDF of π(·|x_h)), one for the transition."""
    states, actions = [], []
    s, A = int(context), arrays.A
    while s < arrays.n_dec:
        a = min(int(np.searchsorted(np.cumsum(policy[s]), rng.random(), side="right")), A - 1)
        k = s * A + a
        lo, hi = int(arrays.starts[k]), int(arrays.starts[k + 1])
        e = min(int(np.searchsorted(np.cumsum(arrays.probs[lo:hi]), rng.random(), side="right")),
                hi - lo - 1)
        states.append(s)
        actions.append(a)
        s = int(arrays.nxt[lo + e])
    return states, actions, s


def _paired_draws(arrays, policy, rng):
    """Per context c (in order): agent trajectory τ ~ π, opponent trajectory τ' ~ π (same policy:
    self-play), one outcome b ~ Bernoulli(P(x_{H+1} ≻ x'_{H+1} | c)).
    Returns a list of (states, actions, final, opponent_final, b)."""
    draws = []
    for c in range(arrays.X):
        states, actions, final = _sample_path(arrays, policy, c, rng)
        _, _, opponent = _sample_path(arrays, policy, c, rng)
        outcome = float(rng.random() < arrays.game.preference(final, opponent))
        draws.append((states, actions, final, opponent, outcome))
    return draws


def _paired_q_estimate(arrays, policy, alpha, estimator, draws, reach):
    """Unbiased estimate Q̂ [N_dec, A] of Q^{π,π}_α from one paired draw per context.

    ``reach`` [N]: exact reach probabilities d_π(x | c) of ``policy``; c0 = PAIRED_BASELINE = ½.

    * ``"exact"``: terminal values V̂(x) = c0 + 1[x = x_{H+1}]·(b − c0)/d_π(x_{H+1}|c) for the
      final states x of context c (importance-weighted Bernoulli outcome; E V̂(x) = P(x ≻ π)), then
      EXACT backward induction through the known p, π and μ: Q̂(x, y) = Σ p V̂(x') − α KL(π‖μ)[x],
      V̂(x) = Σ π Q̂. Every state–action pair of the context gets a (generally nonzero) update.
    * ``"monte_carlo"``: only the visited pairs (x_h, y_h) of τ carry signal:
      Q̂(x_h, y_h) = c0 + (G_h − c0)/(d_π(x_h|c) π(y_h|x_h)) with the sampled return
      G_h = b − α Σ_{h' ≥ h} KL(π‖μ)[x_{h'}] (exact per-state KL along τ); all other pairs get
      Q̂ = c0, a per-state constant that leaves the mirror step's direction unchanged.

    Both satisfy E Q̂(x, y) = Q^{π,π}_α(x, y) exactly for every pair at a reachable state
    (d_π(x|c) > 0; linearity of the backward recursion, resp. E[1[(x,y) visited] G_h] =
    d_π(x) π(y|x) Q(x, y)); tested by enumeration. States the dynamics never reach keep Q̂ = ½
    (resp. ½ − α KL) and are irrelevant to every trajectory.
    """
    if estimator == "exact":
        values = np.zeros(arrays.N)
        values[arrays.n_dec :] = PAIRED_BASELINE
        for _, _, final, _, outcome in draws:
            values[final] += (outcome - PAIRED_BASELINE) / reach[final]
        q, _, _ = arrays.backward(policy, alpha, values)
        return q
    q = np.full((arrays.n_dec, arrays.A), PAIRED_BASELINE)
    log_ratio = np.log(policy) - arrays.log_ref
    state_kl = np.sum(policy * log_ratio, axis=1)
    for states, actions, _, _, outcome in draws:
        ret = outcome
        for s, a in zip(states[::-1], actions[::-1]):
            ret -= alpha * state_kl[s]
            q[s, a] = PAIRED_BASELINE + (ret - PAIRED_BASELINE) / (reach[s] * policy[s, a])
    return q


def _md_update(arrays, pi, evaluated, q, alpha, eta, variant):
    """MTPO: log π' ∝ αη log μ + (1 − αη) log π + η Q̂; MTPO-τ: log π' ∝ log π^α_t + η Q̂.

    Probabilities are floored at the smallest normal float64 (≈2.2e-308): the exact iterate keeps
    full support, and the floor only replaces float underflow (large importance-weighted Q̂ at
    small α), which would otherwise freeze an action at 0 and make log π = −∞."""
    if variant == "mtpo":
        logits = alpha * eta * arrays.log_ref + (1.0 - alpha * eta) * np.log(pi) + eta * q
    else:
        logits = np.log(evaluated) + eta * q
    policy = np.exp(np.maximum(_log_normalize(logits), np.log(np.finfo(np.float64).tiny)))
    return policy / policy.sum(axis=1, keepdims=True)


def _run(name, variant, game, alpha, iterations, eta, schedule, n_samples, seed, init,
         checkpoints, checkpoint_every, reference_solution, sampling="opponent_final_states",
         values_estimate="exact"):
    arrays = _Arrays(game)
    alpha = _alpha(alpha)
    iterations = check_int("iterations", iterations, low=1)
    check_size_budget("iterations", iterations, memory_bytes=8.0 * iterations)
    etas = _etas(alpha, iterations, eta, schedule, variant)
    # the step the schedule would take after the last iteration: the η (and the mixture) that
    # the metrics report at the final checkpoint t = T
    next_eta = 2.0 / (alpha * (iterations + 2.0)) if eta is None else float(etas[-1])
    sampling = check_choice("sampling", sampling, SAMPLINGS)
    values_estimate = check_choice("values", values_estimate, VALUE_ESTIMATES)
    paired = sampling == "paired_trajectories"
    if paired and n_samples is not None:
        raise ValueError(f"n_samples must be None with sampling='paired_trajectories' "
                         f"(one pair per context), got {n_samples!r}")
    if not paired and values_estimate != "exact":
        raise ValueError(f"values must be 'exact' unless sampling='paired_trajectories', "
                         f"got {values_estimate!r}")
    samples = 0 if n_samples is None else check_int("n_samples", n_samples, low=1)
    # per iteration: a backward sweep over the N·A state-action pairs, plus X·n sampled paths
    per_iteration = float(arrays.N) * arrays.A + float(arrays.X) * samples * (arrays.game.horizon + 1)
    check_size_budget("n_samples" if samples > arrays.N * arrays.A else "iterations",
                      samples if samples > arrays.N * arrays.A else iterations,
                      work=per_iteration * iterations,
                      memory_bytes=8.0 * float(arrays.X) * samples)
    rng = as_generator("seed", seed)
    points = _checkpoint_list(iterations, checkpoints, checkpoint_every)
    ref = np.asarray(arrays.game.reference)
    pi = ref.copy() if init is None else arrays.policy("init", init, full_support=True)
    if reference_solution is None:
        target = multiturn_regularized_nash(game, alpha)
    else:
        target = arrays.policy("reference_solution", reference_solution, full_support=True)
    mode = _k.MTPO if variant == "mtpo" else _k.NASH_MD
    values = np.zeros(arrays.N)
    q = np.empty((arrays.n_dec, arrays.A))
    kl = np.empty(arrays.n_dec)
    new = np.empty_like(pi)
    mix = np.empty_like(pi)
    clock = Stopwatch()
    clock.compile(_k._forward_reach, pi, arrays.starts, arrays.nxt, arrays.probs, arrays.N, arrays.X)
    clock.compile(_k._terminal_values, values, arrays.pref, arrays.pref_starts, arrays.final_starts,
                  arrays.n_dec, values)
    log_pi = _log_policy(pi)
    clock.compile(_k._backward_layers, pi, log_pi, arrays.log_ref, alpha, 0.1, mode, arrays.starts,
                  arrays.nxt32, arrays.probs, values, q, kl, new, arrays.layer_starts)
    clock.compile(_k._geometric_mixture, pi, arrays.log_ref, 0.1, mix)
    # layers are backed up in parallel on large games (identical results: states of a layer are
    # independent); below ~10^5 state-action pairs thread start-up costs more than it saves
    # (and only when a core is free: two threads on a loaded machine are slower than one)
    parallel = parallel_worthwhile(arrays.n_dec * arrays.A, PARALLEL_PAIRS)
    layer_starts = arrays.layer_starts
    if parallel:
        clock.compile(_k._backward_layers_parallel, pi, log_pi, arrays.log_ref, alpha, 0.1, mode,
                      arrays.starts, arrays.nxt32, arrays.probs, values, q, kl, new, layer_starts)
    if samples:
        clock.compile(_k._sample_final_states, pi, arrays.starts, arrays.nxt, arrays.probs,
                      arrays.X, samples, rng)
    columns = {"iteration": [], "kl": [], "exploitability": [], "eta": []}
    if variant == "mtpo_tau":
        columns["kl_mixture"] = []

    def record(t):
        columns["iteration"].append(t)
        columns["kl"].append(_trajectory_kl(arrays, target, pi))
        columns["exploitability"].append(_exploitability(arrays, pi, alpha)[0])
        eta_t = etas[t] if t < iterations else next_eta
        columns["eta"].append(eta_t)
        if variant == "mtpo_tau":
            _k._geometric_mixture(pi, arrays.log_ref, eta_t * alpha, mix)
            columns["kl_mixture"].append(_trajectory_kl(arrays, target, mix))

    record(0)
    done = 0
    for point in points[1:]:
        with clock.running():
            for t in range(done, int(point)):
                eta_t = etas[t]
                if variant == "mtpo_tau":
                    _k._geometric_mixture(pi, arrays.log_ref, eta_t * alpha, mix)
                    evaluated = mix
                else:
                    evaluated = pi
                if paired:
                    reach = _k._forward_reach(evaluated, arrays.starts, arrays.nxt, arrays.probs,
                                              arrays.N, arrays.X)
                    draws = _paired_draws(arrays, evaluated, rng)
                    q = _paired_q_estimate(arrays, evaluated, alpha, values_estimate, draws, reach)
                    pi = _md_update(arrays, pi, evaluated, q, alpha, eta_t, variant)
                    continue
                if samples:
                    opponents = _k._sample_final_states(evaluated, arrays.starts, arrays.nxt,
                                                        arrays.probs, arrays.X, samples, rng)
                    _k._sampled_terminal_values(opponents, arrays.pref, arrays.pref_starts,
                                                arrays.final_starts, arrays.n_dec, rng, values)
                else:
                    reach = _k._forward_reach(evaluated, arrays.starts, arrays.nxt, arrays.probs,
                                              arrays.N, arrays.X)
                    _k._terminal_values(reach, arrays.pref, arrays.pref_starts, arrays.final_starts,
                                        arrays.n_dec, values)
                # layer by layer, ascending memory order, int32 successors, log π vectorised
                sweep = _k._backward_layers_parallel if parallel else _k._backward_layers
                sweep(evaluated, _log_policy(evaluated), arrays.log_ref, alpha, eta_t, mode,
                      arrays.starts, arrays.nxt32, arrays.probs, values, q, kl, new, layer_starts)
                pi, new = new, pi
        done = int(point)
        if not np.all(np.isfinite(pi)):
            raise FloatingPointError(f"{name} produced a non-finite policy at t={done}")
        record(done)
    metrics = {key: np.asarray(value, dtype=np.float64) for key, value in columns.items()}
    metrics["iteration"] = metrics["iteration"].astype(np.int64)
    return SolverResult(
        final=pi.copy(),
        metrics=metrics,
        wall_time_s=clock.wall_s,
        compile_time_s=clock.compile_s,
        config={"solver": name, "game": game.name, "alpha": alpha, "iterations": iterations,
                "eta": eta, "schedule": schedule, "n_samples": n_samples, "sampling": sampling,
                "values": values_estimate, "seed": seed if isinstance(seed, int) else repr(seed)},
        extras={"reference_solution": target},
    )


def mtpo(game, alpha, iterations, eta=None, schedule="theorem", *, n_samples=None, seed=0,
         init=None, checkpoints=40, checkpoint_every=None, reference_solution=None,
         sampling="opponent_final_states", values="exact"):
    """MTPO (eq. 2): π_{t+1}(y|x) ∝ μ^{αη_t} π_t^{1−αη_t} exp(η_t Q^{π_t,π_t}_α(x, y)), π_0 = μ.

    Valid range: alpha ≥ 1e-4 (down to 2.2e-308 accepted: iterates whose probabilities underflow are
    floored at 2.2e-308 so every metric stays finite, but below 1e-4 the oracle π*_α may be refused
    with a ValueError naming alpha unless reference_solution is given); iterations ≥ 1 and n_samples
    ≥ 1 (ints) with iterations·(N·A + X·n_samples·(H+1)) ≤ 10¹¹ elementary steps (larger runs are
    refused up front with the estimate); eta > 0 with eta·alpha ≤ 1, only with schedule='constant';
    checkpoints ≥ 2 (at most iterations + 1 distinct ones are recorded) or checkpoint_every ≥ 1.

    Args:
      game: DialogueGame.
      alpha: α > 0.
      iterations: T ≥ 1.
      eta: constant step (schedule="constant", αη ≤ 1); None for schedule="theorem"
        (η_t = 2/(α(t+2)); Theorem 4.2: KL_p(π*‖π_t) ≤ 32HQ²/(α²(t+1))).
      n_samples: None for exact values; n ≥ 1 for the sampled version: each iteration draws n
        opponent trajectories per context from π_t and one Bernoulli preference per (final state,
        opponent) pair; the rest of the values are exact backward induction on those terminal
        values (unbiased for Q^{π_t,π_t}). Only with sampling="opponent_final_states".
      sampling: "opponent_final_states" (default: exact, or the n_samples version above) or
        "paired_trajectories" (the paper's estimator): per iteration and context, ONE trajectory
        τ ~ π_t and ONE opponent trajectory τ' ~ π_t (both from the mixture π^α_t for MTPO-τ),
        ONE Bernoulli outcome b ~ P(x_{H+1} ≻ x'_{H+1} | c); the update uses an unbiased Q̂ with
        E Q̂ = Q^{π_t,π_t}_α (importance weights use the exact reach probabilities of π_t).
      values: with "paired_trajectories" only: "exact" (terminal value = the importance-weighted
        outcome ½ + 1[x = x_{H+1}](b − ½)/d_{π_t}(x_{H+1}), then exact backward induction through
        p, π_t, μ: all pairs updated) or "monte_carlo" (Q̂(x_h, y_h) = ½ + (G_h − ½)/(d(x_h)π(y_h|x_h))
        with the sampled return G_h = b − α Σ_{h'≥h} KL(π_t‖μ)[x_{h'}]: only the visited pairs
        of τ get an update; REINFORCE-style tabular MD). See ``_paired_q_estimate``. Variance grows
        like 1/(d π) of rare pairs, so these modes need many iterations on all but tiny games.
      seed: int or Generator (sampled versions).
      init: initial policy (default μ), full support.
      checkpoints / checkpoint_every: ~log-spaced count, or every n iterations.
      reference_solution: π*_α if already computed (else :func:`multiturn_regularized_nash`).

    Returns:
      SolverResult: final π_T [N_dec, A]; metrics iteration, kl (KL_p(π*_α‖π_t)), exploitability,
      eta (η_t, the step taken from checkpoint t; at t = T the step the schedule would take
      next, 2/(α(T+2)) or the constant η, so the column is finite).
    """
    return _run("mtpo", "mtpo", game, alpha, iterations, eta, schedule, n_samples, seed, init,
                checkpoints, checkpoint_every, reference_solution, sampling, values)


def mtpo_tau(game, alpha, iterations, eta=None, schedule="theorem", *, n_samples=None, seed=0,
             init=None, checkpoints=40, checkpoint_every=None, reference_solution=None,
             sampling="opponent_final_states", values="exact"):
    """MTPO-τ (multi-turn Nash-MD): π^α_t ∝ π_t^{1−η_tα} μ^{η_tα};
    π_{t+1} ∝ π^α_t exp(η_t Q^{π^α_t,π^α_t}_α). Theorem B.2: KL_p(π*‖π^α_t) ≤ 9HQ²/(α²(t+1)).
    Arguments and valid range as :func:`mtpo` (samples are drawn from the mixture). Extra metric
    kl_mixture (KL_p(π*_α‖π^α_t), with π^α_T at the last checkpoint formed with the next step
    η_T, as the ``eta`` column reports).

    Valid range: as mtpo: alpha ≥ 1e-4 (smaller down to 2.2e-308 accepted, see mtpo); iterations ≥ 1
    and n_samples ≥ 1 within the work budget; eta > 0 with eta·alpha ≤ 1 (schedule='constant');
    checkpoints ≥ 2 or checkpoint_every ≥ 1.
    """
    return _run("mtpo_tau", "mtpo_tau", game, alpha, iterations, eta, schedule, n_samples, seed,
                init, checkpoints, checkpoint_every, reference_solution, sampling, values)


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------


def _one_shot(name, game, policy, alpha, config, extras, wall_s):
    arrays = _Arrays(game)
    metrics = {
        "iteration": np.array([0], dtype=np.int64),
        "exploitability": np.array([_exploitability(arrays, policy, alpha)[0]]),
    }
    if game.final_reward is not None:
        reach = arrays.reach(policy)[arrays.n_dec :]
        weights = arrays.rho[np.asarray(game.state_context[arrays.n_dec :])]
        metrics["expected_reward"] = np.array([float(np.sum(weights * reach * game.final_reward))])
    return SolverResult(final=policy, metrics=metrics, wall_time_s=wall_s, compile_time_s=0.0,
                        config={"solver": name, "game": game.name, "alpha": alpha, **config},
                        extras=extras)


def reward_rl(game, alpha, reward=None):
    """Reward-based RL: the KL-regularized optimum argmax E r(x_{H+1}) − α KL_p(π‖μ), exact by
    soft backward induction. ``reward`` [F] defaults to the game's ``final_reward``.

    Returns a SolverResult (single checkpoint) with metrics exploitability (in the preference
    game) and expected_reward (when the game has a reward).

    Valid range: alpha ≥ 2.2e-308 (the smallest normal float64; tested from 1e-6 up); reward [F]
    finite (default: the game's final_reward).
    """
    import time

    arrays = _Arrays(game)
    alpha = _alpha(alpha)
    if reward is None:
        if game.final_reward is None:
            raise ValueError("reward must be given for a game without final_reward, got None")
        reward = game.final_reward
    reward = as_float_array("reward", reward, shape=(arrays.N - arrays.n_dec,))
    start = time.perf_counter()
    policy, values = soft_best_response(game, reward, alpha)
    wall = time.perf_counter() - start
    return _one_shot("reward_rl", game, policy, alpha, {}, {"values": values}, wall)


def _check_pairs(name, n_pairs, arrays, per_pair=1.0):
    """A comparison count ≥ 1 whose sampled trajectories ([2n] final states, path draws of
    length H+1) fit the work and memory budgets; ``per_pair`` multiplies (e.g. per state)."""
    n_pairs = check_int(name, n_pairs, low=1)
    total = float(n_pairs) * per_pair
    check_size_budget(name, n_pairs, work=total * (arrays.game.horizon + 1) * 10,
                      memory_bytes=4 * 8.0 * total)
    return n_pairs


def _sample_pairs(arrays, n_pairs, rng):
    """Wins matrix per context from μ-sampled pairs: list of [F_c, F_c] counts N_ij = #(i beat j)."""
    game = arrays.game
    counts = rng.multinomial(n_pairs, arrays.rho)
    ref = np.asarray(game.reference)
    wins = []
    for c in range(arrays.X):
        lo, hi = int(game.final_starts[c]), int(game.final_starts[c + 1])
        size = hi - lo
        table = np.zeros((size, size))
        n = int(counts[c])
        if n:
            finals = _k._sample_final_states(ref, arrays.starts, arrays.nxt, arrays.probs,
                                             arrays.X, 2 * n, rng)[c] - arrays.n_dec - lo
            first, second = finals[:n], finals[n:]
            block = game.preference_matrix(c)
            won = rng.random(n) < block[first, second]
            np.add.at(table, (np.where(won, first, second), np.where(won, second, first)), 1.0)
        wins.append(table)
    return wins


def _population_pairs(arrays):
    """Expected wins under μ-sampled pairs: N_ij = d_μ(i) d_μ(j) P(i ≻ j | c)."""
    game = arrays.game
    reach = arrays.reach(np.asarray(game.reference))[arrays.n_dec :]
    wins = []
    for c in range(arrays.X):
        lo, hi = int(game.final_starts[c]), int(game.final_starts[c + 1])
        d = reach[lo:hi]
        wins.append(d[:, None] * d[None, :] * game.preference_matrix(c))
    return wins


def _fit_bradley_terry(wins, l2):
    """argmin_r −Σ_ij N_ij log σ(r_i − r_j) / ΣN + (l2/2)‖r‖²: Newton's method with backtracking
    (the objective is strictly convex; Hessian = weighted graph Laplacian + l2·I)."""
    total = max(float(wins.sum()), 1e-300)
    W = wins / total

    def loss(r):
        d = r[:, None] - r[None, :]
        return float(np.sum(W * np.logaddexp(0.0, -d))) + 0.5 * l2 * float(r @ r)

    r = np.zeros(W.shape[0])
    current = loss(r)
    for _ in range(100):
        d = r[:, None] - r[None, :]
        sig = 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d_ij)
        grad = -np.sum(W * (1.0 - sig), axis=1) + np.sum(W.T * sig, axis=1) + l2 * r
        if np.max(np.abs(grad)) < 1e-13:
            break
        C = (W + W.T) * sig * (1.0 - sig)
        hessian = np.diag(C.sum(axis=1) + l2) - C
        try:
            step = np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            # l2 below rounding of the Laplacian (down to 1e-300) with final states no comparison
            # reached: the Hessian is singular in float64; the minimum-norm step leaves the
            # unseen states (zero gradient) at 0, as l2 > 0 does in exact arithmetic
            step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        scale = 1.0
        while scale > 1e-8:
            candidate = r - scale * step
            value = loss(candidate)
            if value <= current:
                break
            scale *= 0.5
        r, current = candidate, value
    return r


def multiturn_rlhf(game, alpha, *, n_pairs=None, seed=0, l2=1e-3):
    """Multi-turn RLHF (MTPO §4, Theorem B.6 target): fit a Bradley–Terry reward r̂ on final states
    from μ-sampled trajectory pairs (``n_pairs`` comparisons with Bernoulli labels; None = the
    population limit with weights d_μ(x)d_μ(x')), then return the exact KL-regularized optimum of
    E r̂ − α KL_p by soft backward induction. ``l2`` fixes the BT shift and keeps unseen states at 0.

    Returns a SolverResult (single checkpoint); extras["reward"] = r̂ [F].

    Valid range: alpha ≥ 2.2e-308 (tested from 1e-4 up); l2 > 0 down to 1e-300; n_pairs ≥ 1 (an int,
    within the work budget) or None (the population limit).
    """
    import time

    arrays = _Arrays(game)
    alpha = _alpha(alpha)
    l2 = check_scalar("l2", l2, low=0.0, low_inclusive=False)
    rng = as_generator("seed", seed)  # validated even when unused (n_pairs=None)
    start = time.perf_counter()
    if n_pairs is None:
        wins = _population_pairs(arrays)
    else:
        wins = _sample_pairs(arrays, _check_pairs("n_pairs", n_pairs, arrays), rng)
    reward = np.concatenate([_fit_bradley_terry(w, l2) for w in wins])
    policy, _ = soft_best_response(game, reward, alpha)
    wall = time.perf_counter() - start
    return _one_shot("multiturn_rlhf", game, policy, alpha,
                     {"n_pairs": n_pairs, "seed": seed, "l2": l2}, {"reward": reward}, wall)


def learned_preference_game(game, *, n_pairs, seed=0, prior=1.0):
    """The game with its preference replaced by a tabular model learned from ``n_pairs`` μ-sampled
    comparisons: P̂(i ≻ j) = (N_ij + prior/2)/(N_ij + N_ji + prior) (antisymmetric; ½ when unseen).

    Valid range: n_pairs ≥ 1 (an int, within the work budget); prior > 0 (finite).
    """
    import dataclasses

    arrays = _Arrays(game)
    n_pairs = _check_pairs("n_pairs", n_pairs, arrays)
    prior = check_scalar("prior", prior, low=0.0, low_inclusive=False)
    wins = _sample_pairs(arrays, n_pairs, as_generator("seed", seed))
    blocks = []
    for w in wins:
        # unseen pairs are exactly ½ (with a subnormal prior, prior/2 rounds to 0 and the ratio
        # would be 0 both ways)
        seen = (w + w.T) > 0
        est = np.where(seen, (w + prior / 2) / np.where(seen, w + w.T + prior, 1.0), 0.5)
        np.fill_diagonal(est, 0.5)
        blocks.append(est.ravel())
    return dataclasses.replace(game, preference_values=np.concatenate(blocks),
                               name=f"{game.name}+learned({n_pairs})")


def _final_distributions(arrays, policy):
    """D [N, F_c-padded] of final-state distributions from every state under ``policy`` (per
    context local final ids; dense, for small games)."""
    game = arrays.game
    width = int(np.max(np.diff(game.final_starts)))
    if arrays.N * width > 20_000_000:
        raise ValueError(f"game is too large for turn-level signals ({arrays.N}×{width} table)")
    D = np.zeros((arrays.N, width))
    ctx = np.asarray(game.state_context)
    finals = np.arange(arrays.n_dec, arrays.N)
    D[finals, finals - arrays.n_dec - np.asarray(game.final_starts)[ctx[finals]]] = 1.0
    for s in range(arrays.n_dec - 1, -1, -1):
        for a in range(arrays.A):
            k = s * arrays.A + a
            lo, hi = arrays.starts[k], arrays.starts[k + 1]
            D[s] += policy[s, a] * (arrays.probs[lo:hi] @ D[arrays.nxt[lo:hi]])
    return D


def _turn_level_game(game, signal, n_rollouts, rng):
    """H = 1 game whose contexts are the decision states of ``game``; block s is the turn-level
    preference T_s(a, b) = E_{x'~p(s,a), x''~p(s,b)} S(x', x'') for the signal S:
    "immediate": P between the final states that the μ-greedy completion of x' and x'' reaches;
    "continuation": P after continuing both branches with μ (exact, or ``n_rollouts`` MC samples)."""
    from fixpoint_rl.envs.dialogue import DialogueGame

    arrays = _Arrays(game)
    ref = np.asarray(game.reference)
    if signal == "immediate":
        greedy = np.zeros_like(ref)
        greedy[np.arange(arrays.n_dec), np.argmax(ref, axis=1)] = 1.0
        # most likely transition of the greedy action: deterministic completion
        D = np.zeros((arrays.N, int(np.max(np.diff(game.final_starts)))))
        ctx = np.asarray(game.state_context)
        finals = np.arange(arrays.n_dec, arrays.N)
        D[finals, finals - arrays.n_dec - np.asarray(game.final_starts)[ctx[finals]]] = 1.0
        for s in range(arrays.n_dec - 1, -1, -1):
            k = s * arrays.A + int(np.argmax(ref[s]))
            lo, hi = arrays.starts[k], arrays.starts[k + 1]
            D[s] = D[arrays.nxt[lo + int(np.argmax(arrays.probs[lo:hi]))]]
    else:
        D = _final_distributions(arrays, ref)
        if n_rollouts is not None:
            # empirical distribution of n_rollouts μ-continuations from every state
            D = np.array([rng.multinomial(n_rollouts, row / row.sum()) / n_rollouts for row in D])
    A = arrays.A
    blocks = []
    for s in range(arrays.n_dec):
        c = int(game.state_context[s])
        P = game.preference_matrix(c)
        size = P.shape[0]
        rows = []
        for a in range(A):
            k = s * A + a
            lo, hi = arrays.starts[k], arrays.starts[k + 1]
            rows.append(arrays.probs[lo:hi] @ D[arrays.nxt[lo:hi], :size])
        E = np.array(rows)  # [A, F_c] outcome distribution of each action
        T = E @ P @ E.T
        T = 0.5 * (T + 1.0 - T.T)  # exact antisymmetry (MC rows are not identical for a = b)
        blocks.append(T.ravel())
    n = arrays.n_dec
    return DialogueGame(
        context_probs=np.full(n, 1.0 / n), layer_starts=np.array([0, n, n + n * A]),
        state_context=np.concatenate([np.arange(n), np.repeat(np.arange(n), A)]), num_actions=A,
        reference=ref, transition_starts=np.arange(n * A + 1),
        transition_next=n + np.arange(n * A), transition_probs=np.ones(n * A),
        final_starts=np.arange(0, n * A + 1, A), preference_values=np.concatenate(blocks),
        name=f"turn-level({signal})",
    )


def _single_turn(name, game, alpha, signal, n_pairs, n_rollouts, seed, solve):
    import time

    arrays = _Arrays(game)
    alpha = _alpha(alpha)
    signal = check_choice("signal", signal, ("immediate", "continuation"))
    if n_rollouts is not None:
        # n rollouts per (decision state, action), each a μ-continuation of ≤ H + 1 steps
        n_rollouts = _check_pairs("n_rollouts", n_rollouts, arrays, per_pair=float(arrays.n_dec) * arrays.A)
    rng = as_generator("seed", seed)
    start = time.perf_counter()
    turn_game = _turn_level_game(game, signal, n_rollouts, rng)
    policy = solve(turn_game, alpha, rng)
    wall = time.perf_counter() - start
    return _one_shot(name, arrays.game, np.ascontiguousarray(policy), alpha,
                     {"signal": signal, "n_pairs": n_pairs, "n_rollouts": n_rollouts,
                      "seed": seed if isinstance(seed, int) else repr(seed)},
                     {"turn_level_game": turn_game}, wall)


def single_turn_rlhf(game, alpha, *, signal="continuation", n_pairs=None, n_rollouts=None, seed=0):
    """Single-turn RLHF: every decision state is a bandit whose preference is the turn-level
    signal (``"immediate"``: next states judged by their μ-greedy completion; ``"continuation"``:
    judged after μ-continuation of both branches, exact or ``n_rollouts`` MC samples). A BT reward
    r̂(x, y) is fitted per state (from ``n_pairs`` μ-sampled comparisons per state, or the
    population limit) and π(y|x) ∝ μ exp(r̂/α). Returns a SolverResult (single checkpoint).

    Valid range: alpha ≥ 2.2e-308 (tested from 1e-4 up); n_pairs, n_rollouts ≥ 1 (ints, within the
    work budget) or None; signal 'immediate' or 'continuation'.
    """
    if n_pairs is not None:  # n_pairs comparisons per decision state
        n_pairs = _check_pairs("n_pairs", n_pairs, _Arrays(game), per_pair=_Arrays(game).n_dec)

    def solve(turn_game, alpha, rng):
        pairs = None if n_pairs is None else n_pairs * turn_game.num_contexts
        return multiturn_rlhf(turn_game, alpha, n_pairs=pairs, seed=rng).final

    return _single_turn("single_turn_rlhf", game, alpha, signal, n_pairs, n_rollouts, seed, solve)


def single_turn_nash_md(game, alpha, *, signal="continuation", n_pairs=None, n_rollouts=None,
                        seed=0):
    """Single-turn Nash-MD: at every decision state, the α-regularized Nash equilibrium (the limit
    of Nash-MD, NLHF Theorem 1) of the turn-level preference game (signals as in
    :func:`single_turn_rlhf`; with ``n_pairs`` the tabular preference learned from that many
    μ-sampled comparisons per state). Returns a SolverResult (single checkpoint).

    Valid range: alpha as multiturn_regularized_nash (certified from 1e-4 up); n_pairs, n_rollouts ≥
    1 (ints, within the work budget) or None; signal 'immediate' or 'continuation'.
    """
    if n_pairs is not None:  # n_pairs comparisons per decision state
        n_pairs = _check_pairs("n_pairs", n_pairs, _Arrays(game), per_pair=_Arrays(game).n_dec)

    def solve(turn_game, alpha, rng):
        if n_pairs is not None:
            turn_game = learned_preference_game(turn_game, n_pairs=n_pairs * turn_game.num_contexts,
                                                seed=rng)
        return multiturn_regularized_nash(turn_game, alpha)

    return _single_turn("single_turn_nash_md", game, alpha, signal, n_pairs, n_rollouts, seed, solve)
