"""Off-policy distributional Q(λ) against distributional Retrace and tree-backup (tabular).

Paper: Tang, Rowland, Munos, Ávila Pires, Dabney, "Off-policy Distributional Q(λ): Distributional
RL without Importance Sampling" (AISTATS 2026; arXiv 2402.05766). The trace table follows Munos et al.
2016 (Retrace, arXiv 1606.02647, Table 1) and Harutyunyan et al. 2016 (Q(λ), arXiv 1602.04951).

One application of the expected operator (general trace family; Munos et al. 2016, arXiv 1606.02647, Table 1):

  𝒜η(x, a) = η(x, a) + E_μ[Σ_{t≥0} c_{1:t} (B_t η(X_{t+1}, π) − B_{t−1} η(X_t, A_t))],
  c_t = λ (Q(λ), no μ needed), λ·min(1, π/μ) (Retrace), λ·π (tree-backup),

computed by the recursive form (a backward recursion equivalent to the trajectory form)

  1. D(x') = Σ_{a'} (π(a'|x') − ρ(x', a')) η(x', a'),  ρ(x', a') = μ(a'|x') c(x', a');
  2. U(x, a) = Π_C Σ_{x', r} P(x', r | x, a) (b_{r,γ})_# [D(x') + Σ_{a'} ρ(x', a') U(x', a')]
     (``projection="per_step"``: one projection per step; the inner fixed point is solved by
     iteration, or truncated after ``horizon`` steps with a full bootstrap η(x_H, π) at the end);
  3. ``projection="per_branch"``: the same H-step truncated target with one projection per branch
     (atoms G_{0:t} + γ^{t+1} z), by exact enumeration of all H-step paths (small MDPs only).

Per-step projection: the fixed point is the one-step categorical fixed point η_C of Π_C T^π for
every λ and μ (derived; checked in the tests). Shapes: S states, A actions, M atoms, T iterations, n window length.

Valid range: λ ∈ [0, 1], γ ∈ [0, 1), policies row-stochastic, η of total mass 1 per (s, a)
(signed masses allowed), tol > 0; iteration caps, horizons, sample counts and probe counts within
the work budget of ``fixpoint_rl.envs.checks.check_size_budget`` (refused up front beyond it, with
the estimate). Inside it results are finite; outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import math

import functools
import numbers
import threading

import numpy as np

from ..envs.checks import (
    as_float_array,
    as_generator,
    check_choice,
    check_distribution,
    check_int,
    check_scalar,
    check_size_budget,
    describe,
)
from ..envs.mdp import TabularMDP, check_policy
from ._jit import Stopwatch
from ._kernels import qlambda as _k
from ._threads import blas_threads, parallel_worthwhile
from .core.categorical import CategoricalSupport, cramer_distance, distribution_mean
from .core.multistep import sampled_multistep_target
from .core.result import SolverResult

__all__ = [
    "categorical_evaluation_fixed_point",
    "contraction_modulus",
    "distributional_operator",
    "distributional_td_learning",
    "iterate_distributional_operator",
    "monte_carlo_returns",
    "policy_q_values",
    "q_lambda_bound_from_mismatch",
    "q_lambda_contraction_bound",
    "sampled_distributional_target",
    "trace_coefficients",
    "value_mode_rate",
]

TRACES = ("q_lambda", "retrace", "tree_backup")
SAMPLED_TRACES = ("q_lambda", "retrace", "tree_backup", "n_step")
PROJECTIONS = ("per_step", "per_branch")
MAX_PARTICLES = 2_000_000
# Signed targets: masses are validated to sum to 1 per (s, a) up to this tolerance (rounding of
# sums over M ≤ 10^4 atoms and of repeated operator applications stays far below it).
MASS_TOLERANCE = 1e-8


# --- validation and model layout ------------------------------------------------------------


def _check_mdp(mdp) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    return mdp


def _check_support(support) -> CategoricalSupport:
    if not isinstance(support, CategoricalSupport):
        raise ValueError(f"support must be a CategoricalSupport, got {type(support).__name__}")
    return support


def _check_lambda(lam) -> float:
    return check_scalar("lam", lam, low=0.0, high=1.0)


def _check_eta(eta, mdp: TabularMDP, support: CategoricalSupport, name: str = "eta") -> np.ndarray:
    eta = as_float_array(name, eta, shape=(mdp.n_states, mdp.n_actions, support.m))
    worst = float(np.max(np.abs(eta.sum(axis=-1) - 1.0)))
    if worst > MASS_TOLERANCE:
        raise ValueError(f"{name} must have total mass 1 per (s, a), got masses off by {worst:.3g}")
    return eta


class _Model:
    """Kernel layout of an MDP's outcomes (CSR by s·A + a) and the dense fast path."""

    def __init__(self, mdp: TabularMDP) -> None:
        S, A = mdp.n_states, mdp.n_actions
        values, joint = mdp.reward_outcomes()  # [S, A, S, K]
        flat_joint = joint.reshape(S * A, -1)
        flat_values = values.reshape(S * A, -1)
        K = values.shape[-1]
        mask = flat_joint > 0
        counts = mask.sum(axis=1)
        self.offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        cols = np.nonzero(mask)[1]
        self.next_state = (cols // K).astype(np.int64)
        self.reward = flat_values[mask].astype(np.float64)
        self.prob = flat_joint[mask].astype(np.float64)
        cumulative = np.empty_like(self.prob)
        for row in range(S * A):
            lo, hi = self.offsets[row], self.offsets[row + 1]
            c = np.cumsum(self.prob[lo:hi])
            c[-1] = 1.0
            cumulative[lo:hi] = c
        self.prob_cumulative = cumulative
        # fast path: reward independent of the next state -> mix with one BLAS product, then project
        self.fast = mdp.reward_kind in ("state_action", "distribution")
        self.P_flat = np.ascontiguousarray(mdp.P.reshape(S * A, S))
        # sparse P (CSR) when at most a fifth of the entries are non-zero: the mixing step then
        # costs O(nnz·M) instead of the dense product's O(S·A·S·M)
        p_mask = self.P_flat > 0
        self.sparse = bool(p_mask.sum() <= 0.2 * p_mask.size)
        self.p_offsets = np.concatenate(([0], np.cumsum(p_mask.sum(axis=1)))).astype(np.int64)
        self.p_columns = np.nonzero(p_mask)[1].astype(np.int64)
        self.p_weights = self.P_flat[p_mask].astype(np.float64)
        if mdp.reward_kind == "state_action":
            self.values_sa = np.ascontiguousarray(mdp.reward.reshape(S * A, 1))
            self.probs_sa = np.ones((S * A, 1))
        elif mdp.reward_kind == "distribution":
            self.values_sa = np.ascontiguousarray(mdp.reward.reshape(S * A, -1))
            self.probs_sa = np.ascontiguousarray(mdp.reward_probs.reshape(S * A, -1))
        else:
            self.values_sa = self.probs_sa = None
        self._tables: dict = {}
        self._scratch: dict = {}  # thread id → product buffer (a dict, so the model pickles)

    def product_buffer(self, m: int) -> np.ndarray:
        """A [S·A, m] scratch array for the dense product P·Y, kept per thread and reused by every
        sweep: a fresh 3 MB result (S = 500, A = 8, M = 101) costs its first-touch page faults
        whenever the allocator has returned the previous one to the OS."""
        thread = threading.get_ident()
        buffer = self._scratch.get(thread)
        if buffer is None or buffer.shape[1] != m:
            buffer = self._scratch[thread] = np.empty((self.P_flat.shape[0], m))
        return buffer

    def projection_tables(self, gamma: float, support: CategoricalSupport):
        """(lower [S·A, K, M] int32, weight_lower, weight_upper [S·A, K, M]) of
        ``_kernels.qlambda._projection_table`` for this grid, computed once and cached (at most
        four grids are kept; each table is 20 bytes per (sa, k, atom))."""
        key = (float(gamma), float(support.v_min), float(support.v_max), int(support.m))
        tables = self._tables.get(key)
        if tables is None:
            if len(self._tables) >= 4:
                self._tables.pop(next(iter(self._tables)))
            tables = _k._projection_table(self.values_sa, self.probs_sa, gamma, support.v_min,
                                          support.v_max, support.delta, support.m)
            self._tables[key] = tables
        return tables


@functools.lru_cache(maxsize=16)
def _model(mdp: TabularMDP) -> _Model:
    return _Model(mdp)


def _cumulative(policy: np.ndarray) -> np.ndarray:
    c = np.cumsum(policy, axis=1)
    c[:, -1] = 1.0
    return np.ascontiguousarray(c)


_HELPER_THREAD = None


def _dense_backup_row_blocks(model: _Model, Y: np.ndarray, tables) -> np.ndarray:
    """The dense backup on two cores: rows [0, h) and [h, S·A) each do their own product block
    (BLAS pinned to one thread) and their own table scatter, on two Python threads (numpy's BLAS
    call and the Numba kernel release the GIL). [S·A, M].

    Why not two BLAS threads for the product and then the scatter: OpenBLAS's worker keeps
    spinning after a two-thread call, so a two-thread scatter right after it fought that worker
    for the second core (measured 23 ms against 7.6 ms with a one-thread scatter, S = 500, A = 8,
    M = 101), and a one-thread scatter after a two-thread product leaves a core idle for a fifth of
    the backup (1.35× the floor); row blocks: 7.2 ms, 1.21× (``benchmarks/perf_qlambda.py``).
    Row blocks give every core the same product-then-scatter work with one pool of threads. Each
    entry is computed by one thread with the same code as the serial path (a row block of a
    one-thread GEMM sums each entry in the same order), so the result does not depend on it (tested).
    """
    global _HELPER_THREAD
    if _HELPER_THREAD is None:
        from concurrent.futures import ThreadPoolExecutor

        _HELPER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fixpoint-qlambda")
    lower, weight_lower, weight_upper = tables
    rows = model.P_flat.shape[0]
    half = rows // 2
    mixed = model.product_buffer(Y.shape[1])
    out = np.empty_like(mixed)

    def block(lo: int, hi: int) -> None:
        np.matmul(model.P_flat[lo:hi], Y, out=mixed[lo:hi])
        _k._project_rows_table_into(mixed[lo:hi], lower[lo:hi], weight_lower[lo:hi], weight_upper[lo:hi],
                                    out[lo:hi])

    with blas_threads(1):
        other = _HELPER_THREAD.submit(block, half, rows)
        block(0, half)
        other.result()
    return out


def _backup(model: _Model, Y: np.ndarray, gamma: float, support: CategoricalSupport) -> np.ndarray:
    """[S·A, M]: row sa = Π_C Σ_{x', r} P(x', r | sa) (b_{r,γ})_# Y[x'] (Y: [S, M], signed)."""
    grid = (support.v_min, support.v_max, support.delta)
    if model.fast:
        # projection tables (atom index and split weights per (sa, reward outcome, atom)) are
        # computed once per (model, γ, grid) and reused by every sweep
        tables = model.projection_tables(gamma, support)
        if model.sparse:
            return _k._backup_csr_table(Y, model.p_offsets, model.p_columns, model.p_weights, *tables)
        # the dense [S·A, S] × [S, M] product (the perf floor); BLAS on one thread unless a core
        # is free (two BLAS threads on a loaded 2-core machine are slower than one)
        if parallel_worthwhile(Y.size * model.P_flat.shape[0], 2**22):
            return _dense_backup_row_blocks(model, Y, tables)
        with blas_threads(1):
            mixed = np.matmul(model.P_flat, Y, out=model.product_buffer(Y.shape[1]))
        return _k._project_rows_table(mixed, *tables)
    return _k._backup_outcomes(
        Y, model.offsets, model.next_state, model.reward, model.prob, gamma, *grid
    )


def trace_coefficients(pi, mu, lam: float, trace: str) -> np.ndarray:
    """Trace c(x, a) [S, A] (c = λ for Q(λ), λ·min(1, π/μ) for Retrace, λ·π for tree-backup;
    Munos et al. 2016, arXiv 1606.02647, Table 1).

    q_lambda: λ; retrace: λ·min(1, π/μ) (λ where μ = 0, never used); tree_backup: λ·π;
    n_step (sampled targets only): the uncorrected n-step target Π_C(G_{0:n−1} + γ^n z)_# η(x_n, π),
    which is not a member of the c-family; its table entry (1) is unused.

    Valid range: lam in [0, 1]; pi, mu [S, A] distributions; trace one of the listed traces.
    """
    pi = check_distribution("pi", pi, ndim=2)
    mu = check_distribution("mu", mu, shape=pi.shape)
    lam = _check_lambda(lam)
    trace = check_choice("trace", trace, SAMPLED_TRACES)
    if trace == "q_lambda":
        return np.full(pi.shape, lam)
    if trace == "retrace":
        safe_mu = np.where(mu > 0, mu, 1.0)
        return lam * np.where(mu > 0, np.minimum(1.0, pi / safe_mu), 1.0)
    if trace == "tree_backup":
        return lam * pi
    return np.ones(pi.shape)


# --- the expected operator ------------------------------------------------------------------


def _apply(mdp, model, eta, pi, rho, support, projection, horizon, tol, max_inner):
    """𝒜η for validated inputs (linear in η; eta may be any signed [S, A, M] array)."""
    S, A, M = eta.shape
    gamma = mdp.gamma
    coeff = pi - rho
    if projection == "per_step":
        bootstrap = np.einsum("sa,sam->sm", pi, eta)
        U = _backup(model, bootstrap, gamma, support).reshape(S, A, M)
        if not np.any(rho):
            return U
        if horizon is not None:
            for _ in range(horizon - 1):
                Y = _k._mix_next(eta, U, coeff, rho)
                U = _backup(model, Y, gamma, support).reshape(S, A, M)
            return U
        previous = np.inf
        for _ in range(max_inner):
            Y = _k._mix_next(eta, U, coeff, rho)
            new = _backup(model, Y, gamma, support).reshape(S, A, M)
            change = float(np.max(np.abs(new - U)))
            U = new
            scale = max(1.0, float(np.max(np.abs(U))))
            # stop at the tolerance, or once the change is at rounding level and stops shrinking
            if change <= tol * scale or (change <= 1e-12 * scale and change >= previous):
                break
            previous = change
        return U
    return _per_branch(mdp, model, eta, pi, coeff, rho, support, horizon)


def _per_branch(mdp, model, eta, pi, coeff, rho, support, horizon):
    """H-step truncated target, one projection per branch, by enumerating all paths."""
    from ._kernels.categorical import _project_batch

    S, A, M = eta.shape
    gamma = mdp.gamma
    z = support.atoms
    out = np.zeros((S * A, M))
    rows = np.repeat(np.arange(S * A), np.diff(model.offsets))
    origin = rows
    state = model.next_state.copy()
    G = model.reward.copy()
    weight = model.prob.copy()
    eta_pi = np.einsum("sa,sam->sm", pi, eta)
    eta_coeff = np.einsum("sa,sam->sm", coeff, eta)
    disc = 1.0  # γ^t
    for t in range(horizon):
        branch = eta_pi[state] if t == horizon - 1 else eta_coeff[state]
        atoms = G[:, None] + disc * gamma * z[None, :]
        projected = _project_batch(
            np.ascontiguousarray(atoms),
            np.ascontiguousarray(branch * weight[:, None]),
            support.v_min,
            support.v_max,
            support.delta,
            M,
        )
        np.add.at(out, origin, projected)
        if t == horizon - 1:
            break
        disc *= gamma
        # expand: (x', a') with ρ(x', a') > 0, then the outcomes of (x', a')
        pairs_state, pairs_action = np.nonzero(rho)
        per_state = np.zeros(S, dtype=np.int64)
        np.add.at(per_state, pairs_state, np.diff(model.offsets)[pairs_state * A + pairs_action])
        total = int(per_state[state].sum())
        if total > MAX_PARTICLES:
            raise ValueError(
                f"horizon={horizon} needs more than {MAX_PARTICLES} path branches for this MDP; "
                "use projection='per_step' or a smaller horizon"
            )
        new_origin, new_state, new_G, new_weight = [], [], [], []
        for x1, a1 in zip(pairs_state, pairs_action):
            sel = np.nonzero(state == x1)[0]
            if sel.size == 0:
                continue
            row = x1 * A + a1
            lo, hi = model.offsets[row], model.offsets[row + 1]
            k = hi - lo
            new_origin.append(np.repeat(origin[sel], k))
            new_state.append(np.tile(model.next_state[lo:hi], sel.size))
            new_G.append(np.repeat(G[sel], k) + disc * np.tile(model.reward[lo:hi], sel.size))
            new_weight.append(
                np.repeat(weight[sel] * rho[x1, a1], k) * np.tile(model.prob[lo:hi], sel.size)
            )
        if not new_origin:
            break
        origin = np.concatenate(new_origin)
        state = np.concatenate(new_state)
        G = np.concatenate(new_G)
        weight = np.concatenate(new_weight)
    return out.reshape(S, A, M)


def _backup_cost(mdp, support) -> float:
    """Elementary steps of one application of a one-step categorical backup (S·A·S·M)."""
    return float(mdp.n_states) * mdp.n_actions * mdp.n_states * support.m


def _prepare(mdp, pi, mu, lam, support, trace, projection, horizon):
    mdp = _check_mdp(mdp)
    pi = check_policy(mdp, pi, "pi")
    mu = check_policy(mdp, mu, "mu")
    lam = _check_lambda(lam)
    support = _check_support(support)
    trace = check_choice("trace", trace, TRACES)
    projection = check_choice("projection", projection, PROJECTIONS)
    if horizon is not None:
        horizon = check_int("horizon", horizon, low=1)
        # the per-branch expansion enumerates up to (S·A)^horizon branches of M atoms each
        branches = np.exp(min(horizon * np.log(max(mdp.n_states * mdp.n_actions, 2)), 700.0))
        check_size_budget("horizon", horizon, work=branches * support.m)
    if projection == "per_branch" and horizon is None:
        raise ValueError("horizon must be an int ≥ 1 when projection='per_branch', got None")
    rho = mu * trace_coefficients(pi, mu, lam, trace)
    return mdp, pi, mu, lam, support, trace, projection, horizon, rho


def distributional_operator(
    mdp: TabularMDP,
    eta,
    pi,
    mu,
    lam: float,
    *,
    support: CategoricalSupport,
    trace: str = "q_lambda",
    projection: str = "per_step",
    horizon: int | None = None,
    tol: float = 1e-14,
    max_inner: int = 100_000,
) -> np.ndarray:
    """One application of the projected multi-step distributional operator Π_C 𝒜^{π,μ}_λ.

    Args:
      mdp: the MDP (γ < 1).
      eta: [S, A, M] masses on ``support`` (may be signed; total mass 1 per (s, a)).
      pi: [S, A] target policy π.  mu: [S, A] behaviour policy μ.
      lam: λ ∈ [0, 1].
      support: the categorical grid (M atoms).
      trace: "q_lambda" (c = λ), "retrace" (c = λ·min(1, π/μ)) or "tree_backup" (c = λπ).
      projection: "per_step" (backward recursion, Π_C after every step; the fixed point is η_C)
        or "per_branch" (Π_C once per branch of the ``horizon``-step target).
      horizon: None (per_step only: the untruncated operator, inner fixed point solved by
        iteration to ``tol``) or H ≥ 1: truncate after H steps, bootstrapping with η(x_H, π).
      tol: sup-norm tolerance on the inner fixed point (per_step, horizon None).
      max_inner: cap on inner iterations.

    Returns:
      [S, A, M] target masses (signed for Q(λ) in general; total mass 1 per (s, a)).

    Valid range: lam in [0, 1]; horizon ≥ 1 (an int) or None; tol > 0 (finite); max_inner ≥ 1 (an
    int); eta [S, A, M] signed masses of total 1 per (s, a); pi, mu [S, A] row-stochastic.
    """
    mdp, pi, mu, lam, support, trace, projection, horizon, rho = _prepare(
        mdp, pi, mu, lam, support, trace, projection, horizon
    )
    eta = _check_eta(eta, mdp, support)
    tol = check_scalar("tol", tol, low=0.0, low_inclusive=False)
    max_inner = check_int("max_inner", max_inner, low=1)
    check_size_budget("max_inner", max_inner, work=max_inner * _backup_cost(mdp, support))
    return _apply(mdp, _model(mdp), eta, pi, rho, support, projection, horizon, tol, max_inner)


def _sup_cramer(diff: np.ndarray, support: CategoricalSupport) -> float:
    """sup over (s, a) of the Cramér norm of zero-mass differences [S, A, M]."""
    return float(np.max(cramer_distance(diff, np.zeros_like(diff), support)))


def iterate_distributional_operator(
    mdp: TabularMDP,
    pi,
    mu,
    lam: float,
    *,
    support: CategoricalSupport,
    trace: str = "q_lambda",
    projection: str = "per_step",
    horizon: int | None = None,
    eta0=None,
    tol: float = 1e-8,
    max_iterations: int = 10_000,
    reference=None,
) -> SolverResult:
    """Iterate η_{k+1} = Π_C 𝒜^{π,μ}_λ η_k until sup_{s,a} ℓ2(η_{k+1}, η_k) ≤ tol.

    Args:
      eta0: [S, A, M] start (default: uniform mass over the atoms).
      reference: optional [S, A, M] target distribution; adds the metric "sup_cramer_error".
      Other arguments as in :func:`distributional_operator`.

    Returns:
      SolverResult: final [S, A, M]; metrics "iteration", "sup_cramer_change" (ℓ2 between
      consecutive iterates), "mean_error" (sup |mean − Q^π|) and, with ``reference``,
      "sup_cramer_error"; extras "q_pi" [S, A], "converged".

    Valid range: lam in [0, 1]; horizon ≥ 1 (an int) or None; tol > 0 (finite); max_iterations ≥ 1
    (an int, within the work budget).
    """
    mdp, pi, mu, lam, support, trace, projection, horizon, rho = _prepare(
        mdp, pi, mu, lam, support, trace, projection, horizon
    )
    S, A, M = mdp.n_states, mdp.n_actions, support.m
    eta = np.full((S, A, M), 1.0 / M) if eta0 is None else _check_eta(eta0, mdp, support, "eta0")
    tol = check_scalar("tol", tol, low=0.0, low_inclusive=False)
    max_iterations = check_int("max_iterations", max_iterations, low=1)
    check_size_budget("max_iterations", max_iterations,
                      work=max_iterations * _backup_cost(mdp, support))
    if reference is not None:
        reference = _check_eta(reference, mdp, support, "reference")
    model = _model(mdp)
    q_pi = policy_q_values(mdp, pi)
    clock = Stopwatch()
    # compile (or load) the kernels this run uses before timing
    Y0 = np.zeros((S, M))
    grid = (support.v_min, support.v_max, support.delta)
    if model.fast:
        clock.compile(
            _k._project_rows, np.zeros((S * A, M)), model.values_sa, model.probs_sa, 0.5, *grid
        )
        if model.sparse:
            clock.compile(_k._mix_rows_csr, Y0, model.p_offsets, model.p_columns, model.p_weights)
    else:
        clock.compile(
            _k._backup_outcomes, Y0, model.offsets, model.next_state, model.reward, model.prob, 0.5, *grid
        )
    clock.compile(_k._mix_next, eta, eta, pi, rho)
    columns: dict[str, list[float]] = {"iteration": [], "sup_cramer_change": [], "mean_error": []}
    if reference is not None:
        columns["sup_cramer_error"] = []
    converged = False
    with clock.running():
        for k in range(1, max_iterations + 1):
            new = _apply(mdp, model, eta, pi, rho, support, projection, horizon, 1e-14, 100_000)
            change = _sup_cramer(new - eta, support)
            eta = new
            columns["iteration"].append(k)
            columns["sup_cramer_change"].append(change)
            columns["mean_error"].append(
                float(np.max(np.abs(distribution_mean(eta, support) - q_pi)))
            )
            if reference is not None:
                columns["sup_cramer_error"].append(_sup_cramer(eta - reference, support))
            if change <= tol:
                converged = True
                break
    return SolverResult(
        final=eta,
        metrics={key: np.asarray(value) for key, value in columns.items()},
        wall_time_s=clock.wall_s,
        compile_time_s=clock.compile_s,
        config={
            "solver": "iterate_distributional_operator",
            "lam": lam,
            "trace": trace,
            "projection": projection,
            "horizon": horizon,
            "tol": tol,
            "max_iterations": max_iterations,
            "gamma": mdp.gamma,
            "support": (support.v_min, support.v_max, support.m),
        },
        extras={"q_pi": q_pi, "converged": converged},
    )


# --- ground truth ---------------------------------------------------------------------------


def policy_q_values(mdp: TabularMDP, pi) -> np.ndarray:
    """Q^π = (I − γ P^π_sa)^{-1} R by a linear solve, shape [S, A].

    Valid range: no numeric arguments; pi [S, A] row-stochastic.
    """
    mdp = _check_mdp(mdp)
    pi = check_policy(mdp, pi)
    S, A = mdp.n_states, mdp.n_actions
    P_sa = mdp.state_action_transition(pi)
    q = np.linalg.solve(np.eye(S * A) - mdp.gamma * P_sa, mdp.expected_reward.reshape(S * A))
    return q.reshape(S, A)


def categorical_evaluation_fixed_point(
    mdp: TabularMDP, pi, *, support: CategoricalSupport, tol: float = 1e-12, max_iterations: int = 100_000
) -> np.ndarray:
    """η_C, the fixed point of Π_C T^π (one-step categorical evaluation), by power iteration.

    Iterates η ← Π_C T^π η from the uniform start until the sup-norm change is ≤ tol (the error
    is then ≤ tol·(1 + o(1))/(1 − γ) in sup-ℓ2 terms; the rate is γ). Returns probs [S, A, M].

    Valid range: tol > 0 (finite); max_iterations ≥ 1 (an int, within the work budget); pi [S, A]
    row-stochastic.
    """
    mdp = _check_mdp(mdp)
    pi = check_policy(mdp, pi)
    support = _check_support(support)
    tol = check_scalar("tol", tol, low=0.0, low_inclusive=False)
    max_iterations = check_int("max_iterations", max_iterations, low=1)
    check_size_budget("max_iterations", max_iterations,
                      work=max_iterations * _backup_cost(mdp, support))
    S, A, M = mdp.n_states, mdp.n_actions, support.m
    model = _model(mdp)
    eta = np.full((S, A, M), 1.0 / M)
    for _ in range(max_iterations):
        new = _backup(model, np.einsum("sa,sam->sm", pi, eta), mdp.gamma, support).reshape(S, A, M)
        change = float(np.max(np.abs(new - eta)))
        eta = new
        if change <= tol:
            break
    return eta


def monte_carlo_returns(
    mdp: TabularMDP, pi, n_samples: int, seed, *, horizon: int | None = None
) -> np.ndarray:
    """Sampled discounted returns from every (s, a) under π: [S, A, N].

    Trajectories are truncated after H steps, H = ``horizon`` or the smallest H with
    γ^H · max|r|/(1 − γ) ≤ 1e-10 (the truncation bias is below that).

    Valid range: n_samples ≥ 1 and horizon ≥ 1 (ints, horizon None: until the tail is negligible)
    with n_samples·horizon within the work budget.
    """
    mdp = _check_mdp(mdp)
    pi = check_policy(mdp, pi)
    n_samples = check_int("n_samples", n_samples, low=1)
    rng = as_generator("seed", seed)
    scale = max(abs(v) for v in mdp.reward_range()) / (1.0 - mdp.gamma)
    if horizon is None:
        if scale == 0.0 or mdp.gamma == 0.0:
            horizon = 1
        else:
            horizon = max(1, int(np.ceil(np.log(1e-10 / scale) / np.log(mdp.gamma))))
    horizon = check_int("horizon", horizon, low=1)
    S, A = mdp.n_states, mdp.n_actions
    # S·A·N trajectories of H steps; three [S·A·N] arrays
    check_size_budget("n_samples", n_samples, memory_bytes=3 * 8.0 * S * A * n_samples)
    check_size_budget("horizon" if horizon > n_samples else "n_samples",
                      horizon if horizon > n_samples else n_samples,
                      work=float(S) * A * n_samples * horizon)
    model = _model(mdp)
    starts_s = np.repeat(np.arange(S), A * n_samples).astype(np.int64)
    starts_a = np.tile(np.repeat(np.arange(A), n_samples), S).astype(np.int64)
    returns = _k._monte_carlo_returns(
        starts_s,
        starts_a,
        _cumulative(pi),
        model.offsets,
        model.next_state,
        model.reward,
        model.prob_cumulative,
        mdp.gamma,
        horizon,
        A,
        rng,
    )
    return returns.reshape(S, A, n_samples)


# --- contraction --------------------------------------------------------------------------


def q_lambda_contraction_bound(mdp: TabularMDP, pi=None, mu=None, lam=None, *, p: float = 2.0) -> float:
    """β_p = γ^{1/p} κ / (1 − λ γ^{1/p}), κ = max_x Σ_a |π(a|x) − λ μ(a|x)|: a sup-ℓ_p Lipschitz
    bound of the distributional Q(λ) operator (our bound for the contraction result of Tang et al.
    2024, arXiv 2402.05766: Minkowski over the trajectory mixture and γ^{1/p} pushforward scaling).

    Same leading arguments as :func:`contraction_modulus` (the measured modulus this bounds).
    From plain numbers (γ, λ, ε) use :func:`q_lambda_bound_from_mismatch`.

    Args:
      mdp: TabularMDP (γ = ``mdp.gamma``).  pi, mu: [S, A] target and behaviour policies.
      lam: λ ∈ [0, 1].  p: the ℓ_p order, p ≥ 1 (2 = Cramér, the metric of ``contraction_modulus``).

    Returns:
      The Lipschitz bound in sup-ℓ_p; < 1 guarantees a contraction. Since κ ≤ (1 − λ) + λε with
      ε = max_x ‖π(·|x) − μ(·|x)‖₁, it is at most ``q_lambda_bound_from_mismatch(γ, λ, ε, p=p)``.

    Valid range: lam in [0, 1]; p ≥ 1 and finite (for the sup-norm limit pass a huge p, e.g. 1e300); pi, mu [S, A] distributions of the mdp.
    """
    if isinstance(mdp, numbers.Real) and not isinstance(mdp, bool):
        raise ValueError(
            "q_lambda_contraction_bound takes (mdp, pi, mu, lam, *, p) like contraction_modulus, "
            f"got a number {describe(mdp)} as mdp; for the bound from plain numbers call "
            "q_lambda_bound_from_mismatch(gamma, lam, eps, p=p)"
        )
    mdp = _check_mdp(mdp)
    pi = check_policy(mdp, pi, "pi")
    mu = check_policy(mdp, mu, "mu")
    lam = _check_lambda(lam)
    p = check_scalar("p", p, low=1.0)
    g = mdp.gamma ** (1.0 / p)
    return g * _kappa(pi, mu, lam) / _one_minus_lam_g(mdp.gamma, lam, p)


def q_lambda_bound_from_mismatch(gamma: float, lam: float, eps: float, *, p: float = 2.0) -> float:
    """β_p = γ^{1/p} κ / (1 − λ γ^{1/p}) with κ = (1 − λ) + λ ε, from plain numbers.

    The policy-free form of :func:`q_lambda_contraction_bound` (κ replaced by its upper bound).

    Args:
      gamma: γ ∈ [0, 1).  lam: λ ∈ [0, 1].  eps: ε = max_x ‖π(·|x) − μ(·|x)‖₁ ∈ [0, 2].
      p: the ℓ_p order, p ≥ 1 (2 = Cramér).

    Returns:
      The Lipschitz bound in sup-ℓ_p; < 1 iff λ ε < (1 − γ^{1/p})/γ^{1/p}.

    Valid range: gamma in [0, 1); lam in [0, 1]; eps = max_x ‖π − μ‖₁ in [0, 2]; p ≥ 1 and
    finite (for the sup-norm limit pass a huge p, e.g. 1e300).
    """
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    lam = _check_lambda(lam)
    eps = check_scalar("eps", eps, low=0.0, high=2.0)
    p = check_scalar("p", p, low=1.0)
    g = gamma ** (1.0 / p)
    return g * ((1.0 - lam) + lam * eps) / _one_minus_lam_g(gamma, lam, p)


def _one_minus_lam_g(gamma: float, lam: float, p: float) -> float:
    """1 − λγ^{1/p} without cancellation, as (1 − λ) − λ·expm1(log(γ)/p): γ^{1/p} rounds to 1 for
    huge p (p = 1e300), where the plain difference would be 0. Below 1e-307 (λ = 1 with
    log(1/γ)/p < 1e-307) the bound, κ ≤ 2 over it, would leave float64: refused, naming p and
    lam (it is vacuous long before)."""
    if gamma == 0.0:
        return 1.0
    denominator = (1.0 - lam) - lam * math.expm1(math.log(gamma) / p)
    if not denominator >= 1e-307:
        raise ValueError(f"p={p!r} with lam={lam!r}: the bound γ^(1/p)κ/(1 − λγ^(1/p)) overflows "
                         "float64 (λ = 1 with log(1/γ)/p below 1e-307); use a smaller p")
    return denominator


def _kappa(pi: np.ndarray, mu: np.ndarray, lam: float) -> float:
    return float(np.max(np.sum(np.abs(pi - lam * mu), axis=1)))


def contraction_modulus(
    mdp: TabularMDP,
    pi,
    mu,
    lam: float,
    *,
    support: CategoricalSupport,
    trace: str = "q_lambda",
    projection: str = "per_step",
    horizon: int | None = None,
    mode: str = "lipschitz",
    n_probes: int = 8,
    iterations: int = 60,
    seed=0,
) -> float:
    """Empirical contraction modulus of Π_C 𝒜^{π,μ}_λ in sup-Cramér on zero-mass perturbations.

    The operator is linear in η, so its Lipschitz constant is sup_δ ‖𝒜δ‖/‖δ‖ over zero-mass
    perturbations δ [S, A, M] with ‖δ‖ = max_{s,a} ℓ2(δ(s, a)).

    mode="rate": power iteration δ ← 𝒜δ/‖𝒜δ‖ from random starts; returns the geometric mean of
      the last ratios (the asymptotic rate, i.e. the spectral radius on zero-mass perturbations).
    mode="lipschitz": the largest one-step ratio ‖𝒜δ‖/‖δ‖ seen over the random probes, every
      power-iteration iterate, and per-(s, a) Dirac-pair probes — a lower estimate of the true
      Lipschitz constant, and therefore never above the bound β₂ (see ``q_lambda_contraction_bound``).

    Valid range: lam in [0, 1]; horizon ≥ 1 (an int) or None; n_probes ≥ 1 and iterations ≥ 2 (ints,
    within the work budget); pi, mu [S, A] row-stochastic.
    """
    mdp, pi, mu, lam, support, trace, projection, horizon, rho = _prepare(
        mdp, pi, mu, lam, support, trace, projection, horizon
    )
    mode = check_choice("mode", mode, ("lipschitz", "rate"))
    n_probes = check_int("n_probes", n_probes, low=1)
    iterations = check_int("iterations", iterations, low=2)
    check_size_budget("iterations" if iterations > n_probes else "n_probes",
                      iterations if iterations > n_probes else n_probes,
                      work=float(n_probes) * iterations * _backup_cost(mdp, support) * 10)
    rng = as_generator("seed", seed)
    S, A, M = mdp.n_states, mdp.n_actions, support.m
    model = _model(mdp)

    def apply(delta):
        image = _apply(mdp, model, delta, pi, rho, support, projection, horizon, 1e-15, 100_000)
        # the exact image has zero mass; remove the rounding drift so that renormalising a tiny
        # image (e.g. when 𝒜 ≈ 0) never turns rounding noise into a unit-mass perturbation
        return image - image.sum(axis=-1, keepdims=True) / M

    def norm(delta):
        return _sup_cramer(delta, support)

    best = 0.0
    rates = []
    for _ in range(n_probes):
        delta = rng.normal(size=(S, A, M))
        delta -= delta.mean(axis=-1, keepdims=True)
        delta /= norm(delta)
        ratios = []
        for _ in range(iterations):
            image = apply(delta)
            size = norm(image)
            ratios.append(size)
            if size == 0.0:
                break
            delta = image / size
        best = max(best, max(ratios))
        tail = np.asarray(ratios[len(ratios) // 2 :])
        rates.append(0.0 if np.any(tail == 0.0) else float(np.exp(np.mean(np.log(tail)))))
    if mode == "rate":
        return float(max(rates))
    # Dirac-pair probes: δ = δ_{z_i} − δ_{z_j} at one (s, a) or at every (s, a)
    for i, j in ((0, M - 1), (M // 2, M // 2 + 1), (0, 1)):
        pair = np.zeros(M)
        pair[i], pair[j] = 1.0, -1.0
        delta = np.broadcast_to(pair, (S, A, M)).copy()
        best = max(best, norm(apply(delta)) / norm(delta))
        signs = rng.choice([-1.0, 1.0], size=(S, A, 1))
        delta = delta * signs
        best = max(best, norm(apply(delta)) / norm(delta))
    return float(best)


def value_mode_rate(
    mdp: TabularMDP,
    pi,
    mu,
    lam: float,
    *,
    support: CategoricalSupport,
    trace: str = "q_lambda",
    iterations: int = 10,
) -> float:
    """Asymptotic rate of the action-independent "value" mode (per-step projection).

    Power iteration from δ(s, a) = δ_{z_{M−1}} − δ_{z_0} for every (s, a), measuring the ratio of
    consecutive sup-norms of the *means* of the iterates. For Q(λ) with no clipping this equals
    γ(1 − λ)/(1 − λγ) for every μ (the action-independent value mode; derived, checked in the tests).

    Valid range: lam in [0, 1]; iterations ≥ 1 (an int, within the work budget).
    """
    mdp, pi, mu, lam, support, trace, projection, horizon, rho = _prepare(
        mdp, pi, mu, lam, support, trace, "per_step", None
    )
    iterations = check_int("iterations", iterations, low=1)
    check_size_budget("iterations", iterations, work=iterations * _backup_cost(mdp, support) * 10)
    S, A, M = mdp.n_states, mdp.n_actions, support.m
    model = _model(mdp)
    delta = np.zeros((S, A, M))
    delta[..., -1], delta[..., 0] = 1.0, -1.0
    ratio = 0.0
    for _ in range(iterations):
        before = float(np.max(np.abs(distribution_mean(delta, support))))
        image = _apply(mdp, model, delta, pi, rho, support, "per_step", None, 1e-15, 100_000)
        after = float(np.max(np.abs(distribution_mean(image, support))))
        ratio = after / before
        if after <= 1e-12 * before:
            return ratio
        delta = image / after  # keep the mean component at unit size
    return ratio


# --- sampled targets and learning --------------------------------------------------------------


def sampled_distributional_target(
    eta,
    pi,
    states,
    actions,
    rewards,
    lam: float,
    *,
    support: CategoricalSupport,
    gamma: float,
    trace: str = "q_lambda",
    mu=None,
    projection: str = "per_branch",
) -> np.ndarray:
    """Sampled multi-step target for (x_0, a_0) from one behaviour window (Tang et al. 2024, arXiv 2402.05766: Q(λ)-C51 target,
    one projection per branch).

    Args:
      eta: [S, A, M] bootstrap masses η̄ (target network).
      pi: [S, A] target policy.
      states: [n + 1] ints x_0..x_n;  actions: [n + 1] ints a_0..a_n (a_n is never read; it keeps
        the layout uniform);  rewards: [n] r_0..r_{n−1}.
      lam: λ ∈ [0, 1].
      trace: "q_lambda" (no behaviour probabilities needed), "retrace" (needs ``mu``),
        "tree_backup" or "n_step" (uncorrected: Π_C(G_{0:n−1} + γ^n z)_# η̄(x_n, π), no
        correction terms; its fixed point is not η_C).
      mu: [S, A] behaviour policy (Retrace only).
      projection: "per_branch" (one projection per branch, the §2.5 loop) or "per_step".

    Returns:
      mass [M], signed in general, total mass 1.

    Valid range: lam in [0, 1]; gamma in [0, 1); eta [S, A, M]; states/actions [n+1] indices;
    rewards [n] finite.
    """
    support = _check_support(support)
    pi = _check_policy_shape("pi", pi)
    S, A = pi.shape
    eta = as_float_array("eta", eta, shape=(S, A, support.m))
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    lam = _check_lambda(lam)
    trace = check_choice("trace", trace, SAMPLED_TRACES)
    projection = check_choice("projection", projection, PROJECTIONS)
    rewards = as_float_array("rewards", rewards, ndim=1)
    n = rewards.shape[0]
    if n < 1:
        raise ValueError("rewards must hold at least one reward, got length 0")
    states = _as_index_array("states", states, n + 1, S)
    actions = _as_index_array("actions", actions, n + 1, A)
    if trace == "retrace":
        if mu is None:
            raise ValueError("mu is required when trace='retrace', got None")
        mu = _check_policy_shape("mu", mu, pi.shape)
    else:
        mu = pi if mu is None else _check_policy_shape("mu", mu, pi.shape)
    # the batched array-API formula (tabular.core.multistep) with a batch of one window; the
    # Numba kernel ``_k._sampled_target`` (same formula, scalar loops) stays the fast path inside
    # distributional_td_learning and is tied to this function by tests/test_c51_targets.py
    nxt = states[1:]
    window = sampled_multistep_target(
        eta[nxt][None],
        pi[nxt][None],
        actions[1:][None],
        rewards[None],
        support=support,
        gamma=gamma,
        lam=lam,
        trace=trace,
        behaviour_probs=mu[nxt, actions[1:]][None],
        projection=projection,
    )
    return window[0]


def _check_policy_shape(name: str, policy, shape=None) -> np.ndarray:
    """Validate an [S, A] policy without an MDP (rows are probability vectors)."""
    from ..envs.checks import check_distribution

    return check_distribution(name, policy, ndim=2, shape=shape)


def _as_index_array(name: str, values, length: int, upper: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (length,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be {length} integers, got {array!r}")
    if np.any(array < 0) or np.any(array >= upper):
        raise ValueError(f"{name} must lie in [0, {upper}), got {array!r}")
    return np.ascontiguousarray(array, dtype=np.int64)


def distributional_td_learning(
    mdp: TabularMDP,
    pi,
    mu,
    lam: float,
    *,
    support: CategoricalSupport,
    trace: str = "q_lambda",
    n_steps: int = 8,
    n_updates: int = 20_000,
    n_checkpoints: int = 20,
    spacing: str = "linear",
    step_exponent: float = 0.6,
    projection: str = "per_step",
    reference=None,
    seed=0,
) -> SolverResult:
    """Tabular distributional TD learning from one continuing μ-trajectory with n-step targets.

    Every step, once the window holds n transitions, its first pair (x_0, a_0) moves towards the
    sampled target of :func:`sampled_distributional_target` (current table as bootstrap):
    η(x_0, a_0) ← (1 − α) η(x_0, a_0) + α · target, α = N(x_0, a_0)^(−step_exponent).

    Args:
      trace: "q_lambda", "retrace", "tree_backup" or "n_step" (uncorrected n-step target).
      n_steps: window length n.  n_updates: number of updates (samples).
      spacing: checkpoints evenly ("linear") or geometrically ("log") spaced in the updates.
      reference: [S, A, M] to measure against (default: η_C of π by power iteration).
      projection: "per_step" (expected target: the per-step operator, fixed point η_C) or
        "per_branch".

    Returns:
      SolverResult: final [S, A, M]; metrics "iteration" (updates), "sup_cramer_error",
      "mean_cramer_error" (over (s, a)); extras "reference".

    Valid range: lam in [0, 1]; n_steps ≥ 1, n_updates ≥ 1 and n_checkpoints ≥ 1 (ints) with
    n_updates·n_steps within the work budget; step_exponent in [0, 1].
    """
    mdp = _check_mdp(mdp)
    pi = check_policy(mdp, pi, "pi")
    mu = check_policy(mdp, mu, "mu")
    lam = _check_lambda(lam)
    support = _check_support(support)
    trace = check_choice("trace", trace, SAMPLED_TRACES)
    projection = check_choice("projection", projection, PROJECTIONS)
    n_steps = check_int("n_steps", n_steps, low=1)
    n_updates = check_int("n_updates", n_updates, low=1)
    n_checkpoints = check_int("n_checkpoints", n_checkpoints, low=1)
    # each update: an n-step window and a target over M atoms per step; buffers of n + 1 entries
    check_size_budget("n_steps", n_steps, memory_bytes=3 * 8.0 * (n_steps + 1))
    check_size_budget("n_checkpoints", n_checkpoints,
                      memory_bytes=8.0 * (n_checkpoints + 1) * mdp.n_states * mdp.n_actions * support.m)
    check_size_budget("n_updates" if n_updates > n_steps else "n_steps",
                      n_updates if n_updates > n_steps else n_steps,
                      work=float(n_updates) * n_steps * support.m * 4)
    spacing = check_choice("spacing", spacing, ("linear", "log"))
    step_exponent = check_scalar("step_exponent", step_exponent, low=0.0, high=1.0)
    rng = as_generator("seed", seed)
    S, A, M = mdp.n_states, mdp.n_actions, support.m
    if reference is None:
        reference = categorical_evaluation_fixed_point(mdp, pi, support=support)
    else:
        reference = _check_eta(reference, mdp, support, "reference")
    model = _model(mdp)
    c = np.ascontiguousarray(trace_coefficients(pi, mu, lam, trace))
    mu_cum = _cumulative(mu)
    eta = np.full((S, A, M), 1.0 / M)
    counts = np.zeros((S, A))
    buf_s = np.zeros(n_steps + 1, dtype=np.int64)
    buf_a = np.zeros(n_steps + 1, dtype=np.int64)
    buf_r = np.zeros(n_steps)
    buf_s[0] = int(np.searchsorted(np.cumsum(mdp.initial), rng.random(), side="right"))
    buf_s[0] = min(buf_s[0], S - 1)
    buf_a[0] = int(min(np.searchsorted(mu_cum[buf_s[0]], rng.random(), side="right"), A - 1))
    filled = 0
    per_step = projection == "per_step"
    args = (
        pi, mu_cum, c, model.offsets, model.next_state, model.reward, model.prob_cumulative,
        mdp.gamma, per_step, trace == "n_step", support.v_min, support.v_max, support.delta,
    )
    clock = Stopwatch()
    clock.compile(_k._td_learning_chunk, eta, *args, buf_s, buf_a, buf_r, filled, counts,
                  step_exponent, 1, rng)
    if spacing == "linear":
        edges = np.linspace(0, n_updates, n_checkpoints + 1)
    else:
        edges = np.concatenate(([0], np.geomspace(min(10, n_updates), n_updates, n_checkpoints)))
    edges = np.unique(np.round(edges).astype(np.int64))
    columns: dict[str, list[float]] = {"iteration": [], "sup_cramer_error": [], "mean_cramer_error": []}
    with clock.running():
        for lo, hi in zip(edges[:-1], edges[1:]):
            filled = _k._td_learning_chunk(
                eta, *args, buf_s, buf_a, buf_r, filled, counts, step_exponent, int(hi - lo), rng
            )
            err = cramer_distance(eta, reference, support)
            columns["iteration"].append(int(hi))
            columns["sup_cramer_error"].append(float(np.max(err)))
            columns["mean_cramer_error"].append(float(np.mean(err)))
    return SolverResult(
        final=eta,
        metrics={key: np.asarray(v) for key, v in columns.items()},
        wall_time_s=clock.wall_s,
        compile_time_s=clock.compile_s,
        config={
            "solver": "distributional_td_learning",
            "lam": lam, "trace": trace, "n_steps": n_steps, "n_updates": n_updates,
            "step_exponent": step_exponent, "projection": projection,
            "gamma": mdp.gamma, "support": (support.v_min, support.v_max, support.m),
            "seed": seed if not isinstance(seed, np.random.Generator) else "generator",
        },
        extras={"reference": reference, "visits": counts},
    )

