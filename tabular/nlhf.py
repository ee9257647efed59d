"""Tabular Nash learning from human feedback: Nash-MD and the algorithms it is compared with.

Munos et al., "Nash Learning from Human Feedback", ICML 2024 (arXiv 2312.00886); Nash-MP from
Tiapkin et al. 2025 (arXiv 2505.19731). Regularised game: Munos et al., Proposition 1; Nash-MD and its rate: Munos et al., Theorem 1;
Nash-MP: Tiapkin et al., the two-step proximal update.

One Nash-MD iteration (NLHF §4, η_t τ ≤ 1):
  1. geometric mixture  π^μ_t ∝ π_t^(1−η_t τ) μ^(η_t τ)                    (the regularised opponent)
  2. mirror step        π_{t+1} ∝ π^μ_t · exp(η_t P(y ≻ π^μ_t))
Theorem 1: KL(π*_τ‖π_{t+1}) ≤ (1 − η_t τ) KL(π*_τ‖π_t) + 2η_t², and with η_t = 2/(τ(t+2)),
KL(π*_τ‖π_T) ≤ 8/(τ²(T+1)).

Every solver takes a ``PreferenceGame`` (``pref`` [K, K] or [X, K, K], ``ref`` μ [K] or [X, K]; all
X contexts run in one call), works in log space, and returns a ``SolverResult`` whose metrics hold,
per checkpoint, ``iteration``, ``kl`` = KL(π*_τ‖π_t) (mean over contexts) and ``exploitability``
= max_π' P_τ(π' ≻ π_t) − ½ (the τ-regularised gap, 0 exactly at π*_τ). The iterations between
checkpoints run inside one Numba kernel (``tabular/_kernels/nlhf.py``); metrics are computed only
at checkpoints, by default ~40 log-spaced ones (``checkpoints=``), or every n iterations
(``checkpoint_every=n``).

Sampled versions (``n_samples=n``): each iteration, every response y is compared with n fresh
opponents y' drawn from the opponent policy and the payoff P(y ≻ π') is replaced by the fraction of
n Bernoulli(P(y ≻ y')) outcomes it wins. Seeded (``seed``), so the same seed gives the same numbers.

Valid range (every function here): τ > 0 (exercised down to 1e-4, and π*_τ down to 1e-6), μ with
full support (μ_min down to 1e-12 and below), K up to thousands, constant steps with ητ ≤ 1;
iterations ≥ 1 with iterations·X·K·(K + n_samples) ≤ 10¹¹ elementary steps (larger runs are
refused up front with the estimate, see ``fixpoint_rl.envs.checks.check_size_budget``). Inside it
every result is finite: KL metrics are computed from log-probabilities, so a probability that
underflows to 0 does not make them +inf. Outside it: ``ValueError`` naming the argument and value.
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
from fixpoint_rl.envs.preference import PreferenceGame
from fixpoint_rl.tabular._jit import Stopwatch
from fixpoint_rl.tabular._kernels import nlhf as _k
from fixpoint_rl.tabular._threads import blas_threads, numba_threads, parallel_worthwhile
from fixpoint_rl.tabular.core.mirror import (
    geometric_mixture_log,
    log_softmax,
    mirror_step_log,
    softmax,
)
from fixpoint_rl.tabular.core.result import SolverResult

__all__ = [
    "best_response_to_reference",
    "fictitious_play",
    "nash_md",
    "nash_md_pg",
    "nash_md_step",
    "nash_mirror_prox",
    "nash_mirror_prox_step",
    "online_mirror_descent",
    "rlhf_bradley_terry",
    "self_play_md",
    "self_play_md_step",
    "theorem_step_sizes",
]

SCHEDULES = ("constant", "theorem")
# Exact-payoff blocks run on two threads (when a core is free, ``_threads.parallel_worthwhile``)
# from X·K² ≥ PARALLEL_WORK (contexts split) or, for one context, K² ≥ PARALLEL_ROWS_WORK (rows of
# each P·π split): below these a parallel region's start-up costs about as much as it saves.
PARALLEL_WORK = 2**20
PARALLEL_ROWS_WORK = 250_000


# --------------------------------------------------------------------------------------------
# single steps (numpy, shared formulas from tabular.core.mirror): the reference the kernel is
# tested against, and the unit the multi-turn (MTPO) code compares with at H = 1.
# --------------------------------------------------------------------------------------------


def _step_inputs(pi, ref, pref, eta, tau):
    pi = check_distribution("pi", pi, ndim=(1, 2))
    ref = check_distribution("ref", ref, shape=pi.shape, full_support=True)
    k = pi.shape[-1]
    pref = as_float_array("pref", pref, shape=(*pi.shape[:-1], k, k))
    PreferenceGame(pref, ref)  # validates pref: entries in [0, 1], pref + prefᵀ = 1, diagonal ½
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    eta = check_scalar("eta", eta, low=0.0, low_inclusive=False)
    return pi, ref, pref, eta, tau


def _payoff(pref, q):
    """P(y ≻ q) = pref @ q per context: [..., K, K] × [..., K] → [..., K]."""
    return np.matmul(pref, q[..., None])[..., 0]


def _log(p):
    with np.errstate(divide="ignore"):
        return np.log(p)


def nash_md_step(pi, ref, pref, eta, tau):
    """One Nash-MD step (NLHF §4): π⁺ ∝ π^μ exp(η P(y ≻ π^μ)), π^μ ∝ π^(1−ητ) μ^(ητ).

    Valid range: ``pi`` any distribution (zeros allowed: with ητ = 1 the mixture is exactly μ, by
    the convention 0⁰ = 1), ``ref`` μ with full support (μ_min down to 1e-300), ``eta`` η > 0,
    ``tau`` τ > 0, ητ ≤ 1; the result is then a finite distribution. Outside it, ``ValueError``
    naming the argument.

    Args:
      pi: [K] or [X, K] current policy π_t.
      ref: reference μ, same shape, full support.
      pref: [K, K] or [X, K, K], pref[i, j] = P(y_i ≻ y_j).
      eta: step size η > 0 with ητ ≤ 1.
      tau: regularisation τ > 0.

    Returns:
      π_{t+1}, same shape as ``pi``.
    """
    pi, ref, pref, eta, tau = _step_inputs(pi, ref, pref, eta, tau)
    check_scalar("eta * tau", eta * tau, high=1.0)
    log_mix = geometric_mixture_log(_log(pi), np.log(ref), eta * tau)
    return softmax(mirror_step_log(log_mix, eta * _payoff(pref, np.exp(log_mix))))


def self_play_md_step(pi, ref, pref, eta, tau):
    """One self-play (magnetic) mirror-descent step, the single-turn case of MTPO (MTPO eq. 2).

    π⁺ ∝ μ^(ητ) π^(1−ητ) exp(η P(y ≻ π)); shapes and arguments as in :func:`nash_md_step`.
    π*_τ is an exact fixed point for every η (self-play mirror descent, Shani et al. 2024, arXiv 2405.14655, eq. 2).

    Valid range: as :func:`nash_md_step`: ``eta`` η > 0, ``tau`` τ > 0 with ητ ≤ 1, ``pi`` zeros
    allowed, ``ref`` full support. Outside it, ``ValueError`` naming the argument.
    """
    pi, ref, pref, eta, tau = _step_inputs(pi, ref, pref, eta, tau)
    check_scalar("eta * tau", eta * tau, high=1.0)
    log_mix = geometric_mixture_log(_log(pi), np.log(ref), eta * tau)
    return softmax(mirror_step_log(log_mix, eta * _payoff(pref, pi)))


def nash_mirror_prox_step(pi, ref, pref, eta, tau):
    """One Nash-MP iteration (Tiapkin et al. 2025, arXiv 2505.19731). Returns (π_{k+½}, π_{k+1}).

    π_{k+½} ∝ exp([η P(y ≻ π_k) + ητ log μ + log π_k]/(1+ητ)),
    π_{k+1} ∝ exp([η P(y ≻ π_{k+½}) + ητ log μ + log π_k]/(1+ητ)).

    Valid range: ``eta`` η > 0 and ``tau`` τ > 0 (any product: the steps are convex combinations
    in log space), ``pi`` zeros allowed, ``ref`` full support. Outside it, ``ValueError`` naming
    the argument.
    """
    pi, ref, pref, eta, tau = _step_inputs(pi, ref, pref, eta, tau)
    log_pi, log_ref = _log(pi), np.log(ref)
    scale = 1.0 / (1.0 + eta * tau)
    half = softmax(scale * (eta * _payoff(pref, pi) + eta * tau * log_ref + log_pi))
    full = softmax(scale * (eta * _payoff(pref, half) + eta * tau * log_ref + log_pi))
    return half, full


def _check_iterations(iterations):
    """An iteration count ≥ 1 whose per-iteration step-size array [T] fits in memory."""
    iterations = check_int("iterations", iterations, low=1)
    check_size_budget("iterations", iterations, memory_bytes=8.0 * iterations)
    return iterations


def theorem_step_sizes(tau, iterations):
    """Theorem 1's schedule η_t = 2/(τ(t+2)), t = 0 … T−1 ([T]); η_0 τ = 1.

    Valid range: ``tau`` τ > 0 with 1/τ finite in float64 (τ ≥ 1e-308); ``iterations`` ≥ 1 with
    the [T] array within the memory budget. Outside it, ``ValueError`` naming the argument.
    """
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    if not np.isfinite(1.0 / tau):
        raise ValueError(f"tau must be ≥ 1e-308 (η_0 = 1/τ must be finite), got {tau!r}")
    iterations = _check_iterations(iterations)
    return 2.0 / (tau * (np.arange(iterations, dtype=np.float64) + 2.0))


# --------------------------------------------------------------------------------------------
# shared driver
# --------------------------------------------------------------------------------------------


def _game_arrays(game):
    """(pref [X, K, K], ref [X, K], contextual) from a PreferenceGame."""
    from fixpoint_rl.envs.preference import PreferenceGame

    if not isinstance(game, PreferenceGame):
        raise ValueError(f"game must be a PreferenceGame, got {describe(game)}")
    pref = np.asarray(game.pref, dtype=np.float64)
    ref = np.asarray(game.ref, dtype=np.float64)
    contextual = pref.ndim == 3
    if not contextual:
        pref, ref = pref[None], ref[None]
    return np.ascontiguousarray(pref), np.ascontiguousarray(ref), contextual


def _checkpoint_list(iterations, checkpoints, checkpoint_every):
    if checkpoint_every is not None:
        every = check_int("checkpoint_every", checkpoint_every, low=1)
        points = np.arange(0, iterations + 1, every)
    else:
        count = check_int("checkpoints", checkpoints, low=2)
        count = min(count, iterations + 1)  # more would only repeat iterations (deduplicated below)
        points = np.round(np.geomspace(1, iterations, max(count - 1, 1))).astype(np.int64)
        points = np.concatenate([[0], points])
    return np.unique(np.concatenate([points, [iterations]]).astype(np.int64))


def _init_policy(init, ref, contextual):
    if init is None:
        return ref.copy()
    shape = ref.shape if contextual else ref.shape[1:]
    pi = check_distribution("init", init, shape=shape, full_support=True)
    return pi.reshape(ref.shape).copy()


def _oracle(game, tau):
    from fixpoint_rl.tabular.nash import regularized_nash_equilibrium

    return np.asarray(regularized_nash_equilibrium(game, tau), dtype=np.float64)


def _exploitability(game, pi, tau):
    from fixpoint_rl.tabular.nash import exploitability

    return float(exploitability(game, pi, tau))


def _shape_out(pi, contextual):
    return pi.copy() if contextual else pi[0].copy()


def _context_weights(game, n_ctx):
    weights = getattr(game, "context_weights", None)
    return np.full(n_ctx, 1.0 / n_ctx) if weights is None else np.asarray(weights, dtype=np.float64)


def _kl_to(target, pi, weights, log_pi=None):
    """E_{x~ρ} KL(target_x ‖ π_x) for [X, K] arrays, from log π when available.

    Computed in log space so that a probability that underflows to 0 (log π finite but below
    −745) does not turn the KL into +inf; without ``log_pi``, π is floored at the smallest normal
    float64 (2.2e-308), which can only under-state a KL that is already ≥ 700·target mass.
    """
    if log_pi is None:
        log_pi = np.log(np.maximum(pi, np.finfo(np.float64).tiny))
    positive = target > 0
    terms = np.where(positive, target * (np.log(np.where(positive, target, 1.0)) - log_pi), 0.0)
    return float(terms.sum(axis=-1) @ weights)


def _run(
    name,
    method,
    game,
    tau,
    etas,
    *,
    init,
    reference,
    checkpoints,
    checkpoint_every,
    n_samples,
    seed,
    mixture,
    config,
):
    """Run ``method`` for len(etas) iterations; metrics at checkpoints (see module docstring)."""
    pref, ref, contextual = _game_arrays(game)
    iterations = etas.shape[0]
    points = _checkpoint_list(iterations, checkpoints, checkpoint_every)
    pi = _init_policy(init, ref, contextual)
    log_pi = np.log(pi)
    log_ref = np.log(ref)
    avg = pi.copy()
    rng = as_generator("seed", seed)
    samples = 0 if n_samples is None else check_int("n_samples", n_samples, low=1)
    # per iteration and context: a K×K payoff product, or K·n sampled comparisons
    n_ctx, k = ref.shape
    per_iteration = float(n_ctx) * k * (k + samples)
    culprit = ("n_samples", samples) if samples > k else ("iterations", iterations)
    check_size_budget(*culprit, work=per_iteration * iterations)
    if reference is None:
        target = _oracle(game, tau).reshape(ref.shape)
    else:
        shape = ref.shape if contextual else ref.shape[1:]
        target = check_distribution("reference", reference, shape=shape).reshape(ref.shape)
    rho = _context_weights(game, ref.shape[0])

    clock = Stopwatch()
    clock.compile(
        _k._run_block, method, log_pi, pi, log_ref, pref, etas[:1], tau, mixture, avg, 0, samples, rng
    )
    # Exact payoffs: run context by context (each context's P stays in cache for a whole block),
    # on two threads when the work is large and a core is free (bitwise the same results).
    # Contexts are split over the threads; a single large-K context splits each P·π product's rows.
    # Nash-MD on one large context runs on plain threads (``_kernels.nlhf.run_nash_md_threads``:
    # one call per thread and block instead of one Numba parallel region per product).
    block = None
    threads = 1
    if samples == 0:
        if n_ctx > 1:
            block = _k._run_block_contexts
            threads = 2 if parallel_worthwhile(n_ctx * k * k, PARALLEL_WORK) else 1
        elif parallel_worthwhile(k * k, PARALLEL_ROWS_WORK):
            block, threads = _k._run_block_rows, 2
        # else: a small single context, or no free core: the serial kernel
    threaded_nash_md = block is _k._run_block_rows and method == _k.NASH_MD
    if threaded_nash_md:
        for kernel, example in _k.nash_md_threads_compile_args(log_pi, pi, log_ref, pref, etas, tau):
            clock.compile(kernel, *example)
    elif block is not None:
        with numba_threads(threads):
            clock.compile(block, method, log_pi, pi, log_ref, pref, etas[:1], tau, mixture, avg, 0)
    columns = {"iteration": [], "kl": [], "exploitability": []}
    if method == _k.FICTITIOUS_PLAY:
        columns.update({"kl_average": [], "exploitability_average": []})

    # Metrics run on one BLAS thread when the kernel runs on two Numba threads: a two-thread BLAS
    # call leaves OpenBLAS's worker spinning on the other core for ~0.1 s (its thread timeout),
    # where it halves the share of the Numba worker (see ``benchmarks/perf_nlhf.py``).
    metric_blas_threads = 1 if block is not None and threads > 1 else None

    def record(t):
        with blas_threads(metric_blas_threads):
            columns["iteration"].append(t)
            columns["kl"].append(_kl_to(target, pi, rho, log_pi))
            columns["exploitability"].append(_exploitability(game, _shape_out(pi, contextual), tau))
            if method == _k.FICTITIOUS_PLAY:
                columns["kl_average"].append(_kl_to(target, avg, rho))
                columns["exploitability_average"].append(
                    _exploitability(game, _shape_out(avg, contextual), tau)
                )

    done = 0
    record(0)
    for point in points[1:]:
        with clock.running():
            if block is None:
                _k._run_block(
                    method, log_pi, pi, log_ref, pref, etas[done:point], tau, mixture, avg, done,
                    samples, rng,
                )
            elif threaded_nash_md:
                _k.run_nash_md_threads(log_pi, pi, log_ref, pref, etas[done:point], tau, threads)
            else:
                with numba_threads(threads):
                    block(method, log_pi, pi, log_ref, pref, etas[done:point], tau, mixture, avg,
                          done)
        done = int(point)
        if not np.all(np.isfinite(log_pi)):
            raise FloatingPointError(f"{name} produced non-finite log-probabilities at t={done}")
        record(done)
    metrics = {key: np.asarray(value) for key, value in columns.items()}
    if method in (_k.NASH_MD, _k.SELF_PLAY_MD, _k.ONLINE_MD, _k.NASH_MP):
        # η_t is the step taken from checkpoint t to t+1; at t = T it is the step the schedule
        # would take next (2/(τ(T+2)) for the theorem schedule, the constant η otherwise).
        theorem = config.get("schedule") == "theorem"
        next_eta = 2.0 / (tau * (iterations + 2)) if theorem else etas[-1]
        metrics["eta"] = np.append(etas, next_eta)[metrics["iteration"]]
    extras = {"reference_solution": _shape_out(target, contextual)}
    if method == _k.FICTITIOUS_PLAY:
        extras["average"] = _shape_out(avg, contextual)
    return SolverResult(
        final=_shape_out(pi, contextual),
        metrics=metrics,
        wall_time_s=clock.wall_s,
        compile_time_s=clock.compile_s,
        config={"solver": name, **config},
        extras=extras,
    )


def _schedule_etas(tau, iterations, eta, schedule):
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    iterations = _check_iterations(iterations)
    schedule = check_choice("schedule", schedule, SCHEDULES)
    if schedule == "theorem":
        if eta is not None:
            raise ValueError(f"eta must be None with schedule='theorem' (η_t = 2/(τ(t+2))), got {eta!r}")
        return theorem_step_sizes(tau, iterations)
    if eta is None:
        raise ValueError("eta must be given with schedule='constant', got None")
    eta = check_scalar("eta", eta, low=0.0, low_inclusive=False)
    if eta * tau > 1.0:
        raise ValueError(f"eta * tau must be ≤ 1, got eta={eta!r}, tau={tau!r} (product {eta * tau!r})")
    return np.full(iterations, eta)


# --------------------------------------------------------------------------------------------
# public solvers
# --------------------------------------------------------------------------------------------


def nash_md(
    game,
    tau,
    iterations,
    eta=None,
    schedule="theorem",
    *,
    n_samples=None,
    seed=0,
    init=None,
    reference=None,
    checkpoints=40,
    checkpoint_every=None,
):
    """Nash-MD (NLHF §4, Theorem 1): last-iterate convergence to π*_τ.

    π^μ_t ∝ π_t^(1−η_tτ) μ^(η_tτ);  π_{t+1} ∝ π^μ_t exp(η_t P(y ≻ π^μ_t)).

    Valid range: ``tau`` τ ≥ 1e-4 (results are finite there; smaller τ runs while the Newton oracle
    π*_τ of the ``kl`` metric resolves, else ``ValueError`` naming tau), no upper limit;
    ``iterations`` ≥ 1 with iterations·X·K·(K + n_samples) ≤ 10¹¹ elementary steps (larger runs are
    refused up front with the estimate); ``checkpoints`` ≥ 2 (more than iterations + 1 are capped)
    or ``checkpoint_every`` ≥ 1; ``eta`` η > 0 with ητ ≤ 1 (only with schedule='constant');
    ``n_samples`` ≥ 1 or None and
    ``seed`` an int or Generator (sampled version); μ with full support (μ_min down to 1e-12 tested).
    Outside it, ``ValueError`` naming the argument and value.

    Args:
      game: PreferenceGame (pref [K, K] or [X, K, K]; ref [K] or [X, K]).
      tau: τ > 0.
      iterations: T ≥ 1.
      eta: constant step (schedule="constant", ητ ≤ 1); must be None for schedule="theorem".
      schedule: "theorem" (η_t = 2/(τ(t+2)), KL_T ≤ 8/(τ²(T+1))) or "constant" (converges to the
        biased point π ∝ μ exp(P(y ≻ π^(ητ))/τ); derived from the stationarity of the update).
      n_samples: None for exact payoffs; n ≥ 1 for the sampled version (n Bernoulli comparisons
        per response and iteration, opponents drawn from π^μ_t).
      seed: int or Generator for the sampled version.
      init: initial policy (default μ).
      reference: π*_τ if already computed (default: ``regularized_nash_equilibrium(game, tau)``).
      checkpoints / checkpoint_every: ~log-spaced checkpoint count, or every n iterations.

    Returns:
      SolverResult: final π_T; metrics iteration, kl, exploitability, eta (η_t at each checkpoint t).
    """
    etas = _schedule_etas(tau, iterations, eta, schedule)
    return _run(
        "nash_md", _k.NASH_MD, game, float(tau), etas, init=init, reference=reference, checkpoints=checkpoints,
        checkpoint_every=checkpoint_every, n_samples=n_samples, seed=seed, mixture=0.0,
        config=dict(tau=tau, iterations=iterations, eta=eta, schedule=schedule,
                    n_samples=n_samples, seed=_seed_repr(seed)),
    )


def self_play_md(
    game,
    tau,
    iterations,
    eta=None,
    schedule="constant",
    *,
    n_samples=None,
    seed=0,
    init=None,
    reference=None,
    checkpoints=40,
    checkpoint_every=None,
):
    """Self-play (magnetic) mirror descent, the single-turn case of MTPO (MTPO eq. 2).

    π_{t+1} ∝ μ^(τη) π_t^(1−τη) exp(η P(y ≻ π_t)). Equals magnetic mirror descent with step
    η' = η/(1−ητ) (MMD's step η' maps to η = η'/(1+η'τ)). π*_τ is an exact fixed point for every
    constant η. Arguments as in :func:`nash_md`; ``schedule`` defaults to "constant" (ητ ≤ 1).

    Valid range: ``tau`` τ ≥ 1e-4 (results are finite there; smaller τ runs while the Newton oracle
    π*_τ of the ``kl`` metric resolves, else ``ValueError`` naming tau), no upper limit;
    ``iterations`` ≥ 1 with iterations·X·K·(K + n_samples) ≤ 10¹¹ elementary steps (larger runs are
    refused up front with the estimate); ``checkpoints`` ≥ 2 (more than iterations + 1 are capped)
    or ``checkpoint_every`` ≥ 1; ``eta`` η > 0 with ητ ≤ 1 (None with schedule='theorem');
    ``n_samples`` ≥ 1 or None and
    ``seed`` an int or Generator (sampled version); μ with full support (μ_min down to 1e-12 tested).
    Outside it, ``ValueError`` naming the argument and value.
    """
    etas = _schedule_etas(tau, iterations, eta, schedule)
    return _run(
        "self_play_md", _k.SELF_PLAY_MD, game, float(tau), etas, init=init, reference=reference,
        checkpoints=checkpoints, checkpoint_every=checkpoint_every, n_samples=n_samples,
        seed=seed, mixture=0.0,
        config=dict(tau=tau, iterations=iterations, eta=eta, schedule=schedule,
                    n_samples=n_samples, seed=_seed_repr(seed)),
    )


def online_mirror_descent(
    game, tau, iterations, eta=None, schedule="constant", *, init=None, reference=None, checkpoints=40,
    checkpoint_every=None,
):
    """Online mirror descent (NLHF eqs. 7–8): π_{t+1} = argmax η P(π ≻ π_t) − KL(π, π^μ_t).

    π_{t+1} ∝ π^μ_t exp(η P(y ≻ π_t)): the same KL centre as Nash-MD, but it plays against π_t.
    Only an O(1/√T) average-regret guarantee is claimed in the paper. Note: after normalisation this
    is exactly the self-play update μ^(ητ) π_t^(1−ητ) exp(η P(y ≻ π_t)) of :func:`self_play_md`
    (a test checks it), so in the tabular exact case it inherits self-play's exact fixed point
    π*_τ. Arguments as in :func:`nash_md`.

    Valid range: ``tau`` τ ≥ 1e-4 (results are finite there; smaller τ runs while the Newton oracle
    π*_τ of the ``kl`` metric resolves, else ``ValueError`` naming tau), no upper limit;
    ``iterations`` ≥ 1 with iterations·X·K·(K + n_samples) ≤ 10¹¹ elementary steps (larger runs are
    refused up front with the estimate); ``checkpoints`` ≥ 2 (more than iterations + 1 are capped)
    or ``checkpoint_every`` ≥ 1; ``eta`` η > 0 with ητ ≤ 1 (None with schedule='theorem'); μ with full support (μ_min down to 1e-12 tested).
    Outside it, ``ValueError`` naming the argument and value.
    """
    etas = _schedule_etas(tau, iterations, eta, schedule)
    return _run(
        "online_mirror_descent", _k.ONLINE_MD, game, float(tau), etas, init=init, reference=reference,
        checkpoints=checkpoints, checkpoint_every=checkpoint_every, n_samples=None, seed=0,
        mixture=0.0, config=dict(tau=tau, iterations=iterations, eta=eta, schedule=schedule),
    )


def nash_mirror_prox(
    game, tau, iterations, eta=1.0, *, init=None, reference=None, checkpoints=40, checkpoint_every=None
):
    """Nash Mirror Prox (Tiapkin et al. 2025, arXiv 2505.19731): two prox steps per iteration.

    π_{k+½} ∝ exp([η P(y ≻ π_k) + ητ log μ + log π_k]/(1+ητ)),
    π_{k+1} ∝ exp([η P(y ≻ π_{k+½}) + ητ log μ + log π_k]/(1+ητ)).
    Linear convergence: KL(π*_τ‖π_k) contracts by ≈ 1/(1+ητ) per iteration for η ≤ 2. Each
    iteration costs two P·π products (``iterations`` counts iterations, not oracle calls).

    Valid range: ``tau`` τ ≥ 1e-4 (results are finite there; smaller τ runs while the Newton oracle
    π*_τ of the ``kl`` metric resolves, else ``ValueError`` naming tau), no upper limit;
    ``iterations`` ≥ 1 with iterations·X·K·(K + n_samples) ≤ 10¹¹ elementary steps (larger runs are
    refused up front with the estimate); ``checkpoints`` ≥ 2 (more than iterations + 1 are capped)
    or ``checkpoint_every`` ≥ 1; ``eta`` η > 0 (any: the prox steps are convex combinations in log
    space); μ with full support (μ_min down to 1e-12 tested).
    Outside it, ``ValueError`` naming the argument and value.
    """
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    iterations = _check_iterations(iterations)
    eta = check_scalar("eta", eta, low=0.0, low_inclusive=False)
    return _run(
        "nash_mirror_prox", _k.NASH_MP, game, tau, np.full(iterations, eta), init=init, reference=reference,
        checkpoints=checkpoints, checkpoint_every=checkpoint_every, n_samples=None, seed=0,
        mixture=0.0, config=dict(tau=tau, iterations=iterations, eta=eta),
    )


def fictitious_play(game, tau, iterations, *, init=None, reference=None, checkpoints=40, checkpoint_every=None):
    """(Smooth) fictitious play (NLHF §3): best respond to the running average of past policies.

    π_{t+1} ∝ μ exp(P(y ≻ π̄_t)/τ) (the τ-regularised best response), π̄_{t+1} = π̄_t + (π_{t+1} −
    π̄_t)/(t+2), π̄_0 = π_0. Only the average converges; the metrics report both: ``kl`` /
    ``exploitability`` of the last iterate and ``kl_average`` / ``exploitability_average`` of π̄_t;
    ``extras["average"]`` is π̄_T.

    Valid range: ``tau`` τ ≥ 1e-4 (results are finite there; smaller τ runs while the Newton oracle
    π*_τ of the ``kl`` metric resolves, else ``ValueError`` naming tau), no upper limit;
    ``iterations`` ≥ 1 with iterations·X·K·(K + n_samples) ≤ 10¹¹ elementary steps (larger runs are
    refused up front with the estimate); ``checkpoints`` ≥ 2 (more than iterations + 1 are capped)
    or ``checkpoint_every`` ≥ 1; μ with full support (μ_min down to 1e-12 tested).
    Outside it, ``ValueError`` naming the argument and value.
    """
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    iterations = _check_iterations(iterations)
    return _run(
        "fictitious_play", _k.FICTITIOUS_PLAY, game, tau, np.ones(iterations), init=init, reference=reference,
        checkpoints=checkpoints, checkpoint_every=checkpoint_every, n_samples=None, seed=0,
        mixture=0.0, config=dict(tau=tau, iterations=iterations),
    )


def nash_md_pg(
    game,
    tau,
    iterations,
    learning_rate=1.0,
    mixture=0.0,
    *,
    n_samples=None,
    seed=0,
    init=None,
    reference=None,
    checkpoints=40,
    checkpoint_every=None,
):
    """Nash-MD-PG (NLHF §7 / App. F) on softmax logits θ, π_θ = softmax(θ).

    Opponent π' = π^β ∝ π_θ^(1−β) μ^β (gradient stopped), β = ``mixture`` ∈ [0, 1] (β = 0 self-play,
    β = 1 best response to μ). Expected gradient (``n_samples=None``):
      g = E_{y~π_θ} ∇_θ log π_θ(y) [P(y ≻ π') − ½ − τ log(π_θ(y)/μ(y))],  θ ← θ + lr·g.
    Sampled (``n_samples=n``): the mean of n single-sample estimates with y ~ π_θ, y' ~ π' and the
    preference probability P(y ≻ y') in place of P(y ≻ π').
    Stationary point: π ∝ μ exp(P(y ≻ π^β)/τ), which is π*_τ only for β = 0 (derived from the
    stationarity of the expected update; Nash-MD-PG as in Munos et al. 2024, arXiv 2312.00886).

    Valid range: ``tau`` τ ≥ 1e-4 (results are finite there; smaller τ runs while the Newton oracle
    π*_τ of the ``kl`` metric resolves, else ``ValueError`` naming tau), no upper limit;
    ``iterations`` ≥ 1 with iterations·X·K·(K + n_samples) ≤ 10¹¹ elementary steps (larger runs are
    refused up front with the estimate); ``checkpoints`` ≥ 2 (more than iterations + 1 are capped)
    or ``checkpoint_every`` ≥ 1; ``learning_rate`` > 0 (any: the logits are kept
    finite); ``mixture`` β in [0, 1]; ``n_samples`` ≥ 1 or None and
    ``seed`` an int or Generator (sampled version); μ with full support (μ_min down to 1e-12 tested).
    Outside it, ``ValueError`` naming the argument and value.
    """
    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    iterations = _check_iterations(iterations)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    mixture = check_scalar("mixture", mixture, low=0.0, high=1.0)
    return _run(
        "nash_md_pg", _k.NASH_MD_PG, game, tau, np.full(iterations, learning_rate), init=init, reference=reference,
        checkpoints=checkpoints, checkpoint_every=checkpoint_every, n_samples=n_samples,
        seed=seed, mixture=mixture,
        config=dict(tau=tau, iterations=iterations, learning_rate=learning_rate,
                    mixture=mixture, n_samples=n_samples, seed=_seed_repr(seed)),
    )


def _seed_repr(seed):
    return seed if isinstance(seed, (int, np.integer)) else repr(seed)


def _one_shot(name, game, tau, pi_ctx, contextual, config, extras, wall_s, reference=None, log_pi=None):
    if tau > 0 and reference is not None:
        shape = pi_ctx.shape if contextual else pi_ctx.shape[1:]
        target = check_distribution("reference", reference, shape=shape).reshape(pi_ctx.shape)
    else:
        target = _oracle(game, tau).reshape(pi_ctx.shape) if tau > 0 else None
    final = _shape_out(pi_ctx, contextual)
    if target is not None:
        kl = _kl_to(target, pi_ctx, _context_weights(game, pi_ctx.shape[0]), log_pi)
        gap = _exploitability(game, final, tau)
        extras = {"reference_solution": _shape_out(target, contextual), **extras}
        metrics = {"iteration": np.array([1]), "kl": np.array([kl]), "exploitability": np.array([gap])}
    else:  # τ = 0: no unique π*_0 to measure a KL against, so no "kl" column
        metrics = {"iteration": np.array([1]), "exploitability": np.array([_exploitability(game, final, 0.0)])}
    return SolverResult(
        final=final,
        metrics=metrics,
        wall_time_s=wall_s,
        compile_time_s=0.0,
        config={"solver": name, **config},
        extras=extras,
    )


def best_response_to_reference(game, tau, *, reference=None):
    """Best response to μ: argmax_π P_τ(π ≻ μ) = π ∝ μ exp(P(y ≻ μ)/τ) (β = 1 in NLHF App. F.3).

    Closed form, no iterations; returns a SolverResult with one checkpoint (``reference``: π*_τ if
    already computed). It "preference-hacks":
    exploitable, and not π*_τ unless μ already is.

    Valid range: ``tau`` τ ≥ 1e-6 (the policy is computed in log space for any τ > 0; the ``kl``
    metric needs π*_τ, which the Newton oracle resolves in float64 from τ = 1e-6 on — below, a
    ``ValueError`` naming tau unless it still converges), no upper limit. Outside it,
    ``ValueError`` naming the argument and value.
    """
    import time

    tau = check_scalar("tau", tau, low=0.0, low_inclusive=False)
    start = time.perf_counter()
    pref, ref, contextual = _game_arrays(game)
    log_pi = log_softmax(np.log(ref) + _payoff(pref, ref) / tau)
    pi = np.exp(log_pi)
    wall = time.perf_counter() - start
    return _one_shot(
        "best_response_to_reference", game, tau, pi, contextual, dict(tau=tau), {}, wall, reference,
        log_pi,
    )


def _fit_bradley_terry(weights, mu, ridge):
    """argmin_r −Σ_ij w_ij log σ(r_i − r_j) + ½·ridge·‖r‖² with E_μ r = 0, by damped Newton.

    The loss is convex; its Hessian is the graph Laplacian of c_ij = (w_ij + w_ji) σ(d_ij) σ(−d_ij),
    d_ij = r_i − r_j, singular only along the constant vector, which μμᵀ fixes (E_μ r = 0).
    """
    k = mu.shape[0]
    sym = weights + weights.T
    r = np.zeros(k)

    def loss(r):
        diff = r[:, None] - r[None, :]
        return np.sum(weights * np.logaddexp(0.0, -diff)) + 0.5 * ridge * r @ r

    value = loss(r)
    for _ in range(200):
        diff = r[:, None] - r[None, :]
        s_neg = 0.5 * (1.0 - np.tanh(0.5 * diff))  # σ(−d), stable
        g_pair = weights * s_neg
        grad = g_pair.T.sum(axis=1) - g_pair.sum(axis=1) + ridge * r
        curvature = sym * s_neg * (1.0 - s_neg)
        hessian = np.diag(curvature.sum(axis=1)) - curvature + ridge * np.eye(k) + np.outer(mu, mu)
        step = np.linalg.solve(hessian, -(grad + mu * (mu @ r)))
        scale = 1.0
        while True:  # backtracking on the convex loss
            candidate = r + scale * step
            new_value = loss(candidate)
            if new_value <= value + 1e-4 * scale * (grad @ step) or scale < 1e-10:
                break
            scale *= 0.5
        r, value = candidate, new_value
        if np.max(np.abs(scale * step)) < 1e-13:
            break
    return r - mu @ r


def rlhf_bradley_terry(game, tau, *, n_pairs=None, seed=0, reference=None):
    """RLHF with a Bradley–Terry reward (the pipeline NLHF argues against, §3).

    1. Fit r by maximum likelihood of BT, P(y ≻ y') = σ(r(y) − r(y')), on pairs (y, y') ~ μ×μ:
       the population loss −Σ μ_i μ_j P_ij log σ(r_i − r_j) (``n_pairs=None``), or the empirical
       loss on n_pairs drawn pairs with Bernoulli outcomes (plus a 1e-6 ridge so the MLE exists); the
       fit is damped Newton on the convex loss.
    2. Return π ∝ μ exp(r/τ); τ = 0 returns the unregularised RLHF policy, uniform over argmax r.

    Valid range: ``tau`` τ = 0 or τ ≥ 1e-6 (the ``kl`` metric needs π*_τ, resolved in float64 from
    τ = 1e-6 on; smaller τ > 0 gives a ``ValueError`` naming tau unless Newton still converges);
    ``n_pairs`` ≥ 1 (or None for the exact population fit) within the work budget; ``seed`` an int
    or Generator. Outside it, ``ValueError`` naming the argument and value.

    Returns:
      SolverResult: one checkpoint; ``kl`` = KL(π*_τ‖π) (no ``kl`` column for τ = 0),
      ``exploitability`` (at τ);
      ``extras["reward"]`` the fitted r ([K] or [X, K], normalised to E_μ r = 0).
    """
    import time

    tau = check_scalar("tau", tau, low=0.0)
    pref, ref, contextual = _game_arrays(game)
    if n_pairs is not None:
        n_pairs = check_int("n_pairs", n_pairs, low=1)
        # three [n_pairs] draws per context, plus the backtracking Newton fit
        check_size_budget("n_pairs", n_pairs, memory_bytes=3 * 8.0 * n_pairs * ref.shape[0],
                          work=10.0 * n_pairs * ref.shape[0])
    rng = as_generator("seed", seed)
    start = time.perf_counter()
    rewards = np.empty_like(ref)
    for x in range(ref.shape[0]):
        mu, p = ref[x], pref[x]
        k = mu.shape[0]
        if n_pairs is None:
            weights, ridge = mu[:, None] * mu[None, :] * p, 0.0
        else:
            first = rng.choice(k, size=n_pairs, p=mu)
            second = rng.choice(k, size=n_pairs, p=mu)
            wins = rng.random(n_pairs) < p[first, second]
            weights = np.zeros((k, k))
            np.add.at(weights, (np.where(wins, first, second), np.where(wins, second, first)), 1.0)
            weights /= n_pairs
            ridge = 1e-6

        rewards[x] = _fit_bradley_terry(weights, mu, ridge)
    log_pi = None
    if tau > 0:
        log_pi = log_softmax(np.log(ref) + rewards / tau)
        pi = np.exp(log_pi)
    else:
        top = rewards >= rewards.max(axis=-1, keepdims=True) - 1e-9
        pi = top / top.sum(axis=-1, keepdims=True)
    wall = time.perf_counter() - start
    return _one_shot(
        "rlhf_bradley_terry", game, tau, pi, contextual,
        dict(tau=tau, n_pairs=n_pairs, seed=_seed_repr(seed)),
        {"reward": _shape_out(rewards, contextual)}, wall, reference, log_pi,
    )
