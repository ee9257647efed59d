"""Exact equilibria and exploitability of preference games (NLHF, Munos et al. 2024; arXiv 2312.00886).

These are the oracles the NLHF algorithms of ``fixpoint_rl.tabular.nlhf`` are checked against, and
they are computed by methods independent of those algorithms:

1. :func:`regularized_nash_equilibrium` — π*_τ, the unique Nash equilibrium of the KL-regularised
   game (NLHF Prop. 1), by globally convergent damped Newton on the fixed-point equation
   log π = log μ + P π / τ + c (all contexts at once, batched LAPACK solves).
2. :func:`nash_equilibrium` — an exact symmetric Nash equilibrium of the unregularised game, by
   linear programming (scipy HiGHS), polished by an exact linear solve on its support.
3. :func:`exploitability` — max_π' P_τ(π' ≻ π) − ½ in closed form: log-sum-exp for τ > 0, a max
   over responses for τ = 0.

Shapes: K responses, X contexts; a policy has the shape of ``game.ref`` ([K] or [X, K]).
Contextual quantities are averaged over contexts with ρ = ``game.context_weights``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..envs.checks import check_distribution, check_int, check_scalar, describe
from ..envs.preference import PreferenceGame

__all__ = [
    "exploitability",
    "fixed_point_residual",
    "nash_equilibrium",
    "preference_against",
    "preference_between",
    "regularized_nash_equilibrium",
    "regularized_preference",
]


# --- validation helpers ----------------------------------------------------------------------


def _check_game(game: Any) -> PreferenceGame:
    if not isinstance(game, PreferenceGame):
        raise ValueError(f"game must be a PreferenceGame, got {describe(game)}")
    return game


def _check_policy(name: str, game: PreferenceGame, pi: Any) -> np.ndarray:
    """A policy with the shape of ``game.ref`` (zeros allowed)."""
    return check_distribution(name, pi, shape=game.ref.shape)


def _batched(game: PreferenceGame) -> tuple[np.ndarray, np.ndarray]:
    """(pref [X, K, K], ref [X, K]) views, X = 1 for a single-context game."""
    if game.is_contextual:
        return game.pref, game.ref
    return game.pref[None], game.ref[None]


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """[X, K, K] @ [X, K] → [X, K] (one BLAS gemv per context; a plain gemv when X = 1)."""
    if matrix.shape[0] == 1:
        return (matrix[0] @ vector[0])[None]
    return np.matmul(matrix, vector[..., None])[..., 0]


def _logsumexp(z: np.ndarray) -> np.ndarray:
    """log Σ_k exp(z_k) along the last axis, [..., K] → [...]."""
    shift = z.max(axis=-1)
    return shift + np.log(np.exp(z - shift[..., None]).sum(axis=-1))


def _kl(p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) along the last axis with 0·log 0 = 0; q given by its (finite) log."""
    positive = p > 0
    log_p = np.log(np.where(positive, p, 1.0))
    return np.where(positive, p * (log_p - log_q), 0.0).sum(axis=-1)


def _average(game: PreferenceGame, per_context: np.ndarray) -> float:
    """ρ-average of a per-context quantity [X] (the value itself for a single context)."""
    if game.is_contextual:
        return float(game.context_weights @ per_context)
    return float(per_context[0])


# --- policy-level preferences ----------------------------------------------------------------


def preference_against(game: PreferenceGame, pi: Any) -> np.ndarray:
    """P(y ≻ π | x) = Σ_y' P(y ≻ y' | x) π(y' | x) for every response y (NLHF §3).

    Valid range: no numeric arguments; ``pi`` any distribution of the game's shape (zeros allowed).

    Args:
      game: the preference game.
      pi: [K] or [X, K] (shape of ``game.ref``).

    Returns:
      [K] or [X, K]: the win-rate of each response against π.
    """
    game = _check_game(game)
    pi = _check_policy("pi", game, pi)
    pref, _ = _batched(game)
    out = _matvec(pref, pi.reshape(pref.shape[0], -1))
    return out.reshape(pi.shape)


def preference_between(game: PreferenceGame, pi: Any, pi_prime: Any) -> float:
    """P(π ≻ π') = E_{x~ρ} E_{y~π, y'~π'} P(y ≻ y' | x) (NLHF §3); P(π ≻ π) = ½.

    Valid range: no numeric arguments; ``pi``, ``pi_prime`` distributions of the game's shape.
    """
    game = _check_game(game)
    pi = _check_policy("pi", game, pi)
    pi_prime = _check_policy("pi_prime", game, pi_prime)
    pref, _ = _batched(game)
    X = pref.shape[0]
    per_context = np.einsum("xi,xi->x", pi.reshape(X, -1), _matvec(pref, pi_prime.reshape(X, -1)))
    return _average(game, per_context)


def regularized_preference(game: PreferenceGame, pi: Any, pi_prime: Any, tau: float) -> float:
    """P_τ(π ≻ π') = P(π ≻ π') − τ KL_ρ(π ‖ μ) + τ KL_ρ(π' ‖ μ) (NLHF §4, eq. 4).

    Valid range: ``tau`` τ ≥ 0 (any finite value; the KL terms are finite because μ has full
    support); ``pi``, ``pi_prime`` distributions of the game's shape (zeros allowed). Outside it,
    ``ValueError`` naming the argument.

    Args:
      tau: τ ≥ 0.
    """
    game = _check_game(game)
    tau = check_scalar("tau", tau, low=0.0)
    pi = _check_policy("pi", game, pi)
    pi_prime = _check_policy("pi_prime", game, pi_prime)
    _, ref = _batched(game)
    X = ref.shape[0]
    log_mu = np.log(ref)
    kl_pi = _average(game, _kl(pi.reshape(X, -1), log_mu))
    kl_pi_prime = _average(game, _kl(pi_prime.reshape(X, -1), log_mu))
    return preference_between(game, pi, pi_prime) - tau * kl_pi + tau * kl_pi_prime


# --- exploitability --------------------------------------------------------------------------


def _exploitability_per_context(pref: np.ndarray, ref: np.ndarray, pi: np.ndarray, tau: float) -> np.ndarray:
    """[X] max_π' P_τ(π' ≻ π) − P_τ(π ≻ π) per context (see :func:`exploitability`)."""
    values = _matvec(pref, pi)  # P(y ≻ π) [X, K]
    self_play = np.einsum("xi,xi->x", pi, values)  # P(π ≻ π) = ½ up to the 1e-9 antisymmetry slack
    if tau == 0.0:
        best = values.max(axis=-1)
    else:
        log_mu = np.log(ref)
        # max_π' Σ π'(y) v(y) − τ KL(π' ‖ μ) = τ log Σ μ(y) exp(v(y)/τ)  (Gibbs variational formula),
        # written as max v + τ log1p(Σ μ expm1((v − max v)/τ)) (Σ μ = 1): (v − max v)/τ ≤ 0 cannot
        # overflow (τ down to the smallest subnormal: expm1(−inf) = −1), and at large τ log1p/expm1
        # keep the O(1) value τ·log(1 + O(1/τ)) instead of τ times a rounding error
        top = values.max(axis=-1)
        with np.errstate(over="ignore"):
            gaps = (values - top[..., None]) / tau
        best = top + tau * np.log1p(np.einsum("xk,xk->x", ref, np.expm1(gaps))) + tau * _kl(pi, log_mu)
    # Both terms are ≥ 0 mathematically (a best response does at least as well as π itself);
    # clip the float64 rounding (≤ 1e-15) so that plots on log axes stay meaningful.
    return np.maximum(best - self_play, 0.0)


def exploitability(game: PreferenceGame, pi: Any, tau: float = 0.0) -> float:
    """Exploitability max_π' P_τ(π' ≻ π) − ½ of a policy in the τ-regularised game.

    Closed forms (per context x, v(y) = P(y ≻ π | x)):
      τ > 0: τ·log Σ_y μ(y) exp(v(y)/τ) + τ·KL(π ‖ μ) − ½   (the best response is ∝ μ exp(v/τ));
      τ = 0: max_y v(y) − ½                                 (a pure best response).
    Contextual games average over contexts with ρ (the max over π' decomposes per context).
    It is 0 exactly at the regularised Nash equilibrium π*_τ and > 0 elsewhere (for τ > 0); for
    τ = 0 it is 0 exactly at the Nash equilibria. ½ is computed as P(π ≻ π) (equal for a valid
    game), which keeps the value ≥ 0 in floating point.

    Valid range: ``tau`` τ ≥ 0, any finite value (the log-sum-exp is shifted by max v, so v/τ does
    not overflow even at the smallest subnormal τ); ``pi`` zeros allowed. Outside it,
    ``ValueError`` naming the argument.

    Args:
      game: the preference game.
      pi: [K] or [X, K] policy (zeros allowed).
      tau: τ ≥ 0.

    Returns:
      The exploitability (a float ≥ 0).
    """
    game = _check_game(game)
    tau = check_scalar("tau", tau, low=0.0)
    pi = _check_policy("pi", game, pi)
    pref, ref = _batched(game)
    per_context = _exploitability_per_context(pref, ref, pi.reshape(ref.shape), tau)
    return _average(game, per_context)


def fixed_point_residual(game: PreferenceGame, pi: Any, tau: float) -> float:
    """max over contexts and responses of |π − softmax(log μ + P π / τ)|.

    Zero exactly at π*_τ (NLHF Prop. 1: π*_τ ∝ μ exp(P(y ≻ π*_τ)/τ)); measured in probability space
    so that responses with negligible mass do not dominate.

    Valid range: ``tau`` τ > 0, any finite value (logits shifted by the max payoff, so P π/τ does
    not overflow); ``pi`` zeros allowed. Outside it, ``ValueError`` naming the argument.

    Args:
      pi: [K] or [X, K]; tau: τ > 0.
    """
    game = _check_game(game)
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    pi = _check_policy("pi", game, pi)
    pref, ref = _batched(game)
    pi_b = pi.reshape(ref.shape)
    values = _matvec(pref, pi_b)
    # shifted by the max payoff (softmax is shift-invariant) so that v/τ cannot overflow
    with np.errstate(over="ignore"):  # −inf entries: exp gives the exact 0
        logits = np.log(ref) + (values - values.max(axis=-1, keepdims=True)) / tau
    target = np.exp(logits - _logsumexp(logits)[..., None])
    return float(np.max(np.abs(pi_b - target)))


# --- regularised Nash equilibrium (Newton) ---------------------------------------------------

_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
_CONVERGED = 1e-11  # log-space residual after which only polishing Newton steps are taken
_POLISH_STEPS = 2  # extra full steps once converged (quadratic convergence → rounding level)


# Documented lower end of τ for the Newton oracle: at and above it the residual reaches 1e-9 on
# every game tested (K up to 2000, μ_min down to 1e-12); below it a stalled solve is refused with
# a ValueError naming τ (the fixed point's conditioning grows like 1/τ).
TAU_RESOLVED = 1e-6

# Responses with π below this are dropped from a single context's Newton system: their columns of
# J_π are ≤ π ≤ 1e-25, so the neglected entries of M are ≤ K·1e-25/τ ≤ 1e-18 for K ≤ 10⁴, τ ≥ 1e-3.
_NEGLIGIBLE = 1e-25


def _newton_step(A: np.ndarray, p: np.ndarray, Ap: np.ndarray, h: np.ndarray, tau: float, eye: np.ndarray) -> np.ndarray:
    """Solve M d = −h, M = I − A J_π/τ, J_π = diag(π) − ππᵀ, for each context [X, K].

    A single context is solved on the support S = {π > 1e-25} only: the columns of J_π outside S
    vanish, so M is block lower-triangular with an identity block on the complement N, and
    d_S = M_SS⁻¹(−h_S), d_N = −h_N + (A J_π)_NS d_S / τ. (At small τ, S is often ≪ K.)
    """
    if A.shape[0] == 1:
        support = np.flatnonzero(p[0] > _NEGLIGIBLE)
        if support.size < p.shape[1]:
            A0, p0, h0 = A[0], p[0], h[0]
            pS = p0[support]
            AJ = A0[:, support] * pS[None, :] - Ap[0][:, None] * pS[None, :]  # (A J_π)[:, S]
            M_SS = np.eye(support.size) - AJ[support] / tau
            d_S = np.linalg.solve(M_SS, -h0[support])
            d = -h0 + AJ @ d_S / tau
            d[support] = d_S
            return d[None]
    jac = eye - (A * p[:, None, :] - Ap[:, :, None] * p[:, None, :]) / tau
    return np.linalg.solve(jac, -h[..., None])[..., 0]


def _newton_fixed_point(
    payoff: np.ndarray,
    log_mu: np.ndarray,
    tau: float,
    max_iter: int,
    init: np.ndarray | None = None,
    tol: float = _CONVERGED,
    polish_steps: int = _POLISH_STEPS,
) -> tuple[np.ndarray, np.ndarray]:
    """Damped Newton for H(u) = u − log μ − A softmax(u) / τ ∈ span(1), batched over contexts.

    u is log π (kept normalised). The Jacobian is M = I − A J_π / τ with J_π = diag(π) − ππᵀ; for
    antisymmetric A it is nonsingular (Mx = 0 ⇒ xᵀJ_πx = xᵀJ_π A J_π x/τ = 0 ⇒ J_π x = 0 ⇒ x = 0),
    and ‖H‖ is coercive modulo constants (A softmax(u)/τ is bounded by 1/(2τ)). So Newton with an
    Armijo backtracking line search on φ = ½‖H − mean(H)‖² converges globally, and quadratically
    near the solution.

    Args:
      payoff: A = P − ½ [X, K, K]; log_mu [X, K]; tau > 0; max_iter per context.

    Returns:
      (log π [X, K], Newton iterations used per context [X]).
    """
    X, K = log_mu.shape
    eye = np.eye(K)

    def state(u: np.ndarray, A: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = u - _logsumexp(u)[:, None]
        pi = np.exp(u)
        H = u - lm - _matvec(A, pi) / tau
        H -= H.mean(axis=-1, keepdims=True)
        return u, pi, H

    u, pi, H = state((log_mu if init is None else init).copy(), payoff, log_mu)
    phi = 0.5 * np.einsum("xk,xk->x", H, H)
    iterations = np.zeros(X, dtype=np.int64)
    polish_left = np.full(X, polish_steps)
    active = np.ones(X, dtype=bool)
    for _ in range(max_iter):
        converged = np.abs(H).max(axis=-1) <= tol
        polish_left[converged & active] -= 1
        active &= polish_left >= 0
        if not active.any():
            break
        idx = np.flatnonzero(active)
        A, lm = payoff[idx], log_mu[idx]
        p, h = pi[idx], H[idx]
        Ap = _matvec(A, p)
        step = _newton_step(A, p, Ap, h, tau, eye)
        alpha = np.ones(idx.size)
        accepted = np.zeros(idx.size, dtype=bool)
        u_new, pi_new, H_new = u[idx].copy(), p.copy(), h.copy()
        phi_old = phi[idx]
        phi_new = phi_old.copy()
        polishing = converged[idx]
        for _ in range(60):
            t = np.flatnonzero(~accepted)
            if t.size == 0:
                break
            ut, pt, Ht = state(u[idx[t]] + alpha[t, None] * step[t], A[t], lm[t])
            phit = 0.5 * np.einsum("xk,xk->x", Ht, Ht)
            # Armijo sufficient decrease (∇φ·step = −2φ); converged contexts take full polishing
            # steps only if they do not make φ worse.
            threshold = np.where(polishing[t], phi_old[t], (1.0 - 2.0 * _ARMIJO * alpha[t]) * phi_old[t])
            ok = phit <= threshold
            good = t[ok]
            u_new[good], pi_new[good], H_new[good], phi_new[good] = ut[ok], pt[ok], Ht[ok], phit[ok]
            accepted[good] = True
            failed_polish = t[~ok & polishing[t]]
            accepted[failed_polish] = True  # keep the old point: we are at rounding level
            polish_left[idx[failed_polish]] = -1
            alpha[t[~ok & ~polishing[t]]] *= 0.5
        stalled = ~accepted
        if stalled.any():
            # The line search cannot decrease φ any further: rounding level, or a problem beyond
            # float64 (the caller checks the residual and raises).
            polish_left[idx[stalled]] = -1
        u[idx], pi[idx], H[idx], phi[idx] = u_new, pi_new, H_new, phi_new
        iterations[idx] += 1
    return u, iterations


def _continuation(tau: float, start: float = 0.05, ratio: float = 0.2, max_stages: int = 16) -> list[float]:
    """Intermediate τ values start·ratio^k strictly above τ (empty when τ ≥ start), at most
    ``max_stages`` of them (down to ≈ 1.6e-12; below that float64 rarely resolves π*_τ anyway, and
    an unbounded count would take hundreds of stages at τ = 1e-200)."""
    stages = []
    while start > tau * 1.5 and len(stages) < max_stages:
        stages.append(start)
        start *= ratio
    return stages


def regularized_nash_equilibrium(game: PreferenceGame, tau: float, *, max_iter: int = 500) -> np.ndarray:
    """π*_τ, the unique Nash equilibrium of the τ-regularised preference game (NLHF Prop. 1).

    It is the fixed point π*_τ(y) ∝ μ(y) exp(P(y ≻ π*_τ)/τ), found by damped Newton on
    log π = log μ + P π / τ + c (see ``_newton_fixed_point``), independently of the mirror-descent
    algorithms it is used to check. All contexts are solved in one batched call. The fixed-point
    residual (:func:`fixed_point_residual`) is ≤ 1e-12 for τ ≥ 1e-3 and K up to 2000.

    Valid range: ``tau`` τ ≥ 1e-6 (``TAU_RESOLVED``; the fixed point's conditioning grows like
    1/τ, so rounding alone leaves a probability-space residual ≈ 1e-17/τ): the residual is then
    ≤ 1e-9. Smaller τ > 0 (down to 1e-308, where P π/τ is still finite) is accepted when Newton
    still reaches that residual (e.g. when π*_τ is uniform or nearly pure), else ``ValueError``
    naming tau. No upper limit on τ. ``max_iter`` ≥ 40 (5–40 Newton iterations are typical; a
    smaller budget that runs out raises ``ValueError`` naming max_iter). Outside it, ``ValueError``
    naming the argument and value.

    Args:
      game: the preference game.
      tau: τ > 0, the KL-regularisation strength.
      max_iter: Newton iterations allowed per context (typically 5–40 are used).

    Returns:
      π*_τ with the shape of ``game.ref`` ([K] or [X, K]).

    Raises:
      ValueError: on invalid inputs, and for τ < 1e-6 when float64 cannot resolve π*_τ.
      RuntimeError: if Newton fails to reach a residual of 1e-9 at τ ≥ 1e-6 (not observed).
    """
    game = _check_game(game)
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    if not np.isfinite(1.0 / tau):
        raise ValueError(f"tau must be ≥ 1e-308 (P π / τ must be finite), got {tau!r}")
    max_iter = check_int("max_iter", max_iter, low=1)
    pref, ref = _batched(game)
    payoff = pref - 0.5
    log_mu = np.log(ref)
    # Continuation in τ (warm starts along τ_k = 0.05·0.2^k > τ, each solved loosely) keeps the
    # damped phase short at small τ; the last stage is solved at τ itself to rounding level.
    log_pi = None
    for stage_tau in _continuation(tau):
        log_pi, used = _newton_fixed_point(payoff, log_mu, stage_tau, max_iter, log_pi, 1e-4, 0)
        if used.max() >= max_iter:  # a stage that exhausts max_iter: smaller stages would too
            break
    # The log-space residual H = u − log μ − Aπ/τ cannot fall below the rounding of its terms
    # (≈ ε·(|log μ| + 1/(2τ))): asking for less makes Newton spend max_iter line searches on noise
    # at small τ. Polishing steps after convergence still take it to rounding level.
    floor = 8.0 * np.finfo(np.float64).eps * (float(np.abs(log_mu).max()) + 0.5 / tau)
    log_pi, used = _newton_fixed_point(payoff, log_mu, tau, max_iter, log_pi, max(_CONVERGED, floor))
    pi = np.exp(log_pi)
    pi /= pi.sum(axis=-1, keepdims=True)
    pi = pi.reshape(game.ref.shape)
    residual = fixed_point_residual(game, pi, tau)
    if not residual <= 1e-9 and tau < TAU_RESOLVED:
        # The fixed point's conditioning grows like 1/τ (a rounding error ε in π moves the logits
        # by ε/τ), so below the documented range float64 may not resolve it: refuse, naming τ.
        raise ValueError(
            f"tau={tau!r} is below the range where π*_τ is resolved in float64 (τ ≥ {TAU_RESOLVED:g}"
            f" always; smaller τ only when Newton converges): fixed-point residual {residual:.3g} > 1e-9"
        )
    if not residual <= 1e-9 and used.max() >= max_iter:
        raise ValueError(
            f"max_iter={max_iter} Newton iterations were not enough (fixed-point residual "
            f"{residual:.3g} > 1e-9 at tau={tau!r}); raise max_iter (5–40 are typical)"
        )
    if not residual <= 1e-9:
        raise RuntimeError(
            f"regularized_nash_equilibrium did not converge: residual {residual:.3g} for tau={tau!r}"
        )
    return pi


# --- unregularised Nash equilibrium (LP) -----------------------------------------------------


def _polish_on_support(payoff: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Re-solve A_SS π_S = 0, Σ π_S = 1 exactly on the LP's support S; keep it if it is still an
    equilibrium (π ≥ 0 and max_y (Aπ)_y no worse than the LP's), else return the LP point."""
    support = np.flatnonzero(pi > 1e-9)
    system = np.vstack([payoff[np.ix_(support, support)], np.ones((1, support.size))])
    rhs = np.zeros(support.size + 1)
    rhs[-1] = 1.0
    solution, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    if np.any(solution < -1e-12):
        return pi
    polished = np.zeros_like(pi)
    polished[support] = np.maximum(solution, 0.0)
    polished /= polished.sum()
    if (payoff @ polished).max() <= max((payoff @ pi).max(), 1e-12):
        return polished
    return pi


def nash_equilibrium(game: PreferenceGame) -> np.ndarray:
    """A symmetric Nash equilibrium π* of the unregularised game, by linear programming.

    Solves min t s.t. (P − ½) π ≤ t·1, Σ π = 1, π ≥ 0 (all contexts in one block-diagonal sparse
    LP, scipy HiGHS). For an antisymmetric payoff the optimum is t = 0, i.e. P(y ≻ π*) ≤ ½ for every
    y, which is the symmetric equilibrium condition (NLHF §3: P(π* ≻ π') ≥ ½ for all π'). The LP's
    vertex is then polished by an exact linear solve on its support. When the equilibrium is not
    unique, one of them (a vertex) is returned.

    Valid range: no numeric arguments; any PreferenceGame.

    Args:
      game: the preference game.

    Returns:
      π* with the shape of ``game.ref`` ([K] or [X, K]).
    """
    from scipy import sparse
    from scipy.optimize import linprog

    game = _check_game(game)
    pref, ref = _batched(game)
    X, K = ref.shape
    payoff = pref - 0.5
    # variables: [π_0 (K), …, π_{X−1} (K), t_0, …, t_{X−1}]
    upper = sparse.hstack(
        [sparse.block_diag(list(payoff), format="csr"), -sparse.kron(sparse.eye(X), np.ones((K, 1)))],
        format="csr",
    )
    equality = sparse.hstack(
        [sparse.kron(sparse.eye(X), np.ones((1, K))), sparse.csr_matrix((X, X))], format="csr"
    )
    cost = np.concatenate([np.zeros(X * K), np.ones(X)])
    bounds = [(0.0, None)] * (X * K) + [(None, None)] * X
    result = linprog(
        cost,
        A_ub=upper,
        b_ub=np.zeros(X * K),
        A_eq=equality,
        b_eq=np.ones(X),
        bounds=bounds,
        method="highs",
    )
    if result.status != 0:  # cannot happen for a valid game (the LP is feasible and bounded)
        raise RuntimeError(f"nash_equilibrium: HiGHS failed: {result.message}")
    pi = np.maximum(result.x[: X * K].reshape(X, K), 0.0)
    pi /= pi.sum(axis=-1, keepdims=True)
    pi = np.stack([_polish_on_support(payoff[x], pi[x]) for x in range(X)])
    return pi.reshape(game.ref.shape)
