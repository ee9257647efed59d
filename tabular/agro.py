"""AGRO — Any-Generation Reward Optimization on a softmax bandit (Tang et al., arXiv 2503.19612).

Objective (Tang et al. 2025, arXiv 2503.19612, Theorem 1): max_π E_{y∼π}[r(y)] − β KL(π ‖ π_ref), whose optimum is
π* ∝ π_ref exp(r/β). Generation consistency (Theorem 1): the regularized reward

    R̃_π(y) = r(y) − β log(π(y)/π_ref(y))

is constant in y exactly at π = π* (it equals β log Z). AGRO's sample-based gradient (arXiv 2503.19612)
uses n generations y_1..y_n from ANY sampling distribution μ (on-policy π, π_ref, replay of past
policies, mixtures) and no importance weights:

    ĝ = (1/n) Σ_i ( R̃(y_i) − mean_{j≠i} R̃(y_j) ) ∇_θ log π_θ(y_i).

Its expectation, Σ_y μ(y)(R̃(y) − E_μ R̃) ∇ log π(y), is minus the gradient of the pairwise
consistency loss L(θ) = (1/(4β)) E_{y,y'∼μ}[(R̃(y) − R̃(y'))²] (derived; checked by finite differences in the tests), whose only
stationary point is π* when μ has full support. The naive KL-regularized policy gradient with a
reward-only baseline, (r(y_i) − mean_{j≠i} r(y_j) − β log(π/π_ref)(y_i)) ∇ log π(y_i), is the exact
gradient of the objective on-policy but has a biased stationary point off-policy (arXiv 2503.19612).

Policies are softmax(θ) over K responses of one prompt; shapes: θ, r, π_ref, μ are [K]; samples [n].

Valid range: β > 0 (1e-6 … 1e6 exercised; every metric is computed from log-probabilities, so
underflowing probabilities give no inf/NaN), π_ref full support, finite logits, learning_rate·β
≤ ``MAX_STEP_TIMES_BETA`` in ``train_agro``, sizes within the work budget. Outside it ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from ..envs.checks import (
    as_float_array,
    as_generator,
    check_choice,
    check_distribution,
    check_indices,
    check_int,
    check_scalar,
    check_size_budget,
)
from .core.mirror import log_softmax, softmax
from .core.result import SolverResult
from ._jit import Stopwatch

__all__ = [
    "train_agro",
    "agro_expected_gradient",
    "agro_gradient",
    "agro_optimal_policy",
    "naive_pg_expected_gradient",
    "naive_pg_gradient",
    "pairwise_consistency_loss",
    "regularized_reward",
]

SAMPLINGS = ("on_policy", "reference", "replay", "mixture", "fixed")
# Largest learning_rate·β accepted by ``train_agro`` (the paper figure and benchmark use 1 and ½).
MAX_STEP_TIMES_BETA = 2.0
ESTIMATORS = ("agro", "naive")


def _check_problem(logits, reward, ref, beta):
    logits = as_float_array("logits", logits, ndim=1)
    reward = as_float_array("reward", reward, shape=logits.shape)
    ref = check_distribution("ref", ref, shape=logits.shape, full_support=True)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    return logits, reward, ref, beta


def _check_samples(samples, num_responses, low=1):
    return check_indices("samples", samples, upper=num_responses, min_size=low)


def _score(probs, samples):
    """∇_θ log π_θ(y_i) = e_{y_i} − π for each sample: [n, K]."""
    return np.eye(probs.shape[-1])[samples] - probs


def agro_optimal_policy(reward, ref, beta) -> np.ndarray:
    """π* ∝ π_ref exp(r/β) (arXiv 2503.19612, Theorem 1), [K].

    Valid range: ``beta`` β > 0, any finite value (β in [1e-6, 1e6] tested; r/β is shifted by max r
    so it cannot overflow); ``reward`` finite; ``ref`` full support. Outside it, ``ValueError``
    naming the argument.
    """
    reward = as_float_array("reward", reward, ndim=1)
    ref = check_distribution("ref", ref, shape=reward.shape, full_support=True)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    # shifted by max r (softmax is shift-invariant) so that r/β cannot overflow to inf − inf
    with np.errstate(over="ignore"):  # −inf entries: exp gives the exact 0
        logits = np.log(ref) + (reward - reward.max()) / beta
    return softmax(logits)


def regularized_reward(logits, reward, ref, beta) -> np.ndarray:
    """R̃_θ(y) = r(y) − β log(π_θ(y)/π_ref(y)) (AGRO Theorem 1), [K].

    Valid range: ``beta`` β > 0 (β in [1e-6, 1e6] tested; log π_θ from log-softmax, so it never
    underflows); finite ``logits`` and ``reward``; ``ref`` full support. Outside it,
    ``ValueError`` naming the argument.
    """
    logits, reward, ref, beta = _check_problem(logits, reward, ref, beta)
    return reward - beta * (log_softmax(logits) - np.log(ref))


def agro_gradient(logits, reward, ref, beta, samples) -> np.ndarray:
    """AGRO's sample-based ascent direction for generations from any distribution (arXiv 2503.19612).

    ĝ = (1/n) Σ_i (R̃(y_i) − mean_{j≠i} R̃(y_j)) (e_{y_i} − π), no importance weights.

    Args:
      logits: [K] policy logits θ (π = softmax θ).
      reward: [K] reward r(y).
      ref: [K] reference policy π_ref (full support).
      beta: KL coefficient β > 0.
      samples: [n] response indices (n ≥ 2), drawn from any sampling distribution μ.

    Valid range: ``beta`` β > 0 (β in [1e-6, 1e6] tested); finite ``logits``/``reward``; ``ref``
    full support; ``samples`` n ≥ 2 indices in [0, K). Outside it, ``ValueError`` naming the
    argument.

    Returns:
      [K] gradient estimate with respect to θ (an ascent direction; its μ-expectation is
      ``agro_expected_gradient`` = −∇ ``pairwise_consistency_loss``).
    """
    logits, reward, ref, beta = _check_problem(logits, reward, ref, beta)
    samples = _check_samples(samples, logits.shape[0], low=2)
    probs = softmax(logits)
    regularized = reward - beta * (log_softmax(logits) - np.log(ref))  # log space: π may underflow
    values = regularized[samples]
    n = values.shape[0]
    leave_one_out_mean = (values.sum() - values) / (n - 1)
    return ((values - leave_one_out_mean)[:, None] * _score(probs, samples)).mean(axis=0)


def naive_pg_gradient(logits, reward, ref, beta, samples) -> np.ndarray:
    """Naive KL-regularized policy gradient with a reward-only leave-one-out baseline (the baseline AGRO is compared with).

    ĝ = (1/n) Σ_i (r(y_i) − mean_{j≠i} r(y_j) − β log(π/π_ref)(y_i)) (e_{y_i} − π). Unbiased for
    ∇[E_π r − β KL(π‖π_ref)] only when the samples come from π. Shapes as ``agro_gradient``.

    Valid range: as :func:`agro_gradient`: ``beta`` β > 0 (1e-6 … 1e6 tested), ``samples`` n ≥ 2.
    """
    logits, reward, ref, beta = _check_problem(logits, reward, ref, beta)
    samples = _check_samples(samples, logits.shape[0], low=2)
    probs = softmax(logits)
    rewards = reward[samples]
    n = rewards.shape[0]
    leave_one_out_mean = (rewards.sum() - rewards) / (n - 1)
    log_ratio = log_softmax(logits)[samples] - np.log(ref[samples])
    weights = rewards - leave_one_out_mean - beta * log_ratio
    return (weights[:, None] * _score(probs, samples)).mean(axis=0)


def _agro_direction(probs, reward, ref, beta, sampling, log_probs):
    regularized = reward - beta * (log_probs - np.log(ref))
    centred = regularized - np.dot(sampling, regularized)
    weights = sampling * centred
    return weights - probs * weights.sum()


def _naive_direction(probs, reward, ref, beta, sampling, log_probs):
    weights = sampling * (reward - np.dot(sampling, reward) - beta * (log_probs - np.log(ref)))
    return weights - probs * weights.sum()


def agro_expected_gradient(logits, reward, ref, beta, sampling) -> np.ndarray:
    """E_{y_{1:n}∼μ}[AGRO estimate] = Σ_y μ(y)(R̃(y) − E_μ R̃)(e_y − π), for any n ≥ 2 (derived).

    Args: as ``agro_gradient``, with ``sampling`` the [K] sampling distribution μ. Returns [K].

    Valid range: ``beta`` β > 0 (1e-6 … 1e6 tested); ``sampling`` any distribution (zeros
    allowed). Outside it, ``ValueError`` naming the argument.
    """
    logits, reward, ref, beta = _check_problem(logits, reward, ref, beta)
    sampling = check_distribution("sampling", sampling, shape=logits.shape)
    return _agro_direction(softmax(logits), reward, ref, beta, sampling, log_softmax(logits))


def naive_pg_expected_gradient(logits, reward, ref, beta, sampling) -> np.ndarray:
    """E_{y_{1:n}∼μ}[naive PG estimate] = Σ_y μ(y)(r(y) − E_μ r − β log(π/π_ref)(y))(e_y − π). [K].

    Valid range: ``beta`` β > 0 (1e-6 … 1e6 tested); ``sampling`` any distribution (zeros
    allowed). Outside it, ``ValueError`` naming the argument.
    """
    logits, reward, ref, beta = _check_problem(logits, reward, ref, beta)
    sampling = check_distribution("sampling", sampling, shape=logits.shape)
    return _naive_direction(softmax(logits), reward, ref, beta, sampling, log_softmax(logits))


def pairwise_consistency_loss(logits, reward, ref, beta, sampling) -> float:
    """L(θ) = (1/(4β)) Σ_{y,y'} μ(y)μ(y') (R̃_θ(y) − R̃_θ(y'))² = Var_μ(R̃_θ)/(2β) (arXiv 2503.19612).

    Valid range: ``beta`` β > 0 (1e-6 … 1e6 tested) with the loss finite in float64 (a spread of
    R̃ so large that Var/(2β) > 1.8e308, e.g. β = 5e-324, raises ``ValueError`` naming beta);
    ``sampling`` any distribution. Outside it, ``ValueError`` naming the argument.
    """
    logits, reward, ref, beta = _check_problem(logits, reward, ref, beta)
    sampling = check_distribution("sampling", sampling, shape=logits.shape)
    regularized = reward - beta * (log_softmax(logits) - np.log(ref))
    differences = regularized[:, None] - regularized[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        loss = float(np.sum(sampling[:, None] * sampling[None, :] * differences**2) / (4.0 * beta))
    if not np.isfinite(loss):
        raise ValueError(
            f"the loss Var_μ(R̃)/(2β) overflows float64 for beta={beta!r}: the spread of the "
            "regularised rewards is too large for this β (raise beta or rescale reward)"
        )
    return loss


def _sample(rng, probs, n):
    cdf = np.cumsum(probs)
    draws = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return np.minimum(draws, probs.shape[0] - 1)


def train_agro(
    reward,
    ref,
    beta,
    *,
    sampling="on_policy",
    estimator="agro",
    iterations=2000,
    learning_rate=1.0,
    batch_size=None,
    init_logits=None,
    sampling_distribution=None,
    replay_window=50,
    mixture_weight=0.5,
    checkpoints=50,
    seed=0,
) -> SolverResult:
    """Train a softmax policy with AGRO (or the naive PG) toward π* ∝ π_ref exp(r/β).

    θ ← θ + η ĝ, with ĝ the expected update (``batch_size=None``, exact) or the sample estimate
    from ``batch_size`` generations per step.

    Valid range: ``beta`` β in [1e-6, 1e6] tested (any β > 0 accepted: metrics are computed in log
    space, so π* and π may underflow without a NaN or inf; β so small that spread(r)/β or
    spread(r)²/(2β) exceeds 1e300 is refused, as the kl and loss metrics would overflow float64);
    ``learning_rate`` η > 0 with η·β ≤
    ``MAX_STEP_TIMES_BETA`` = 2 (larger steps overshoot and diverge: ``ValueError`` naming
    learning_rate); ``iterations`` T ≥ 1 and ``batch_size`` n ≥ 2 (or None) with T·(n + K)
    within the work budget of ``fixpoint_rl.envs.checks.check_size_budget``; ``replay_window``
    ≥ 1; ``mixture_weight`` in [0, 1]; ``checkpoints`` ≥ 1; ``seed`` an int or Generator.
    Outside it, ``ValueError`` naming the argument and value.

    Args:
      reward: [K] rewards; ref: [K] reference policy (full support); beta: β > 0.
      sampling: where generations come from — "on_policy" (π_θ), "reference" (π_ref), "replay"
        (uniform mixture of the last ``replay_window`` iterates), "mixture" (``mixture_weight``·π_ref
        + (1 − ``mixture_weight``)·π_θ) or "fixed" (``sampling_distribution``, a [K] μ).
      estimator: "agro" or "naive" (reward-only baseline).
      iterations: T ≥ 1; learning_rate: η > 0 with η·β ≤ ``MAX_STEP_TIMES_BETA`` = 2 (larger
        steps overshoot and diverge; refused); batch_size: None (exact) or n ≥ 2.
      init_logits: [K] starting logits (default log π_ref).
      checkpoints: number of metric checkpoints; seed: for the sampled mode.

    Returns:
      SolverResult: final [K] policy; metrics "iteration", "kl" (KL(π‖π*)), "consistency_spread"
      (max − min of R̃ over responses), "loss" (pairwise consistency loss under π_ref);
      extras "optimal_policy".
    """
    reward = as_float_array("reward", reward, ndim=1)
    ref = check_distribution("ref", ref, shape=reward.shape, full_support=True)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    sampling = check_choice("sampling", sampling, SAMPLINGS)
    estimator = check_choice("estimator", estimator, ESTIMATORS)
    iterations = check_int("iterations", iterations, low=1)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    if learning_rate * beta > MAX_STEP_TIMES_BETA:
        # the regularised reward moves by β per unit of log π: ascent steps with η·β ≫ 1
        # overshoot and diverge (logits → ±inf, then NaN), so such runs are refused up front
        raise ValueError(
            f"learning_rate * beta must be ≤ {MAX_STEP_TIMES_BETA} for stable ascent, got "
            f"learning_rate={learning_rate!r}, beta={beta!r} (product {learning_rate * beta:.3g})"
        )
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, low=2)
    # per iteration: batch_size draws (default 2) and a K-sized gradient
    draws = 2 if batch_size is None else batch_size
    culprit = ("batch_size", batch_size) if draws > iterations else ("iterations", iterations)
    check_size_budget(*culprit, work=float(iterations) * (draws + reward.shape[0]) * 10,
                      memory_bytes=4 * 8.0 * draws)
    logits = (
        np.log(ref).copy()
        if init_logits is None
        else as_float_array("init_logits", init_logits, shape=reward.shape, copy=True)
    )
    fixed = None
    if sampling_distribution is not None:  # validated whenever given (used only when "fixed")
        fixed = check_distribution("sampling_distribution", sampling_distribution, shape=reward.shape)
    if sampling == "fixed" and fixed is None:
        raise ValueError("sampling_distribution must be given when sampling='fixed', got None")
    replay_window = check_int("replay_window", replay_window, low=1)
    check_size_budget("replay_window", replay_window, memory_bytes=8.0 * reward.shape[0] * replay_window)
    mixture_weight = check_scalar("mixture_weight", mixture_weight, low=0.0, high=1.0)
    checkpoints = check_int("checkpoints", checkpoints, low=1)
    check_size_budget("checkpoints", checkpoints, memory_bytes=8.0 * 16 * checkpoints)
    rng = as_generator("seed", seed)
    spread = float(reward.max() - reward.min())
    with np.errstate(over="ignore"):
        worst = max(spread / beta, spread * spread / (2.0 * beta))
    if not worst <= 1e300:
        # KL(π‖π*) reaches ≈ spread/β and the loss Var(R̃)/(2β) ≈ spread²/(2β): beyond float64
        raise ValueError(
            f"beta={beta!r} is too small for the reward spread {spread:.3g}: the kl and loss "
            "metrics (≈ spread/β and spread²/(2β)) would overflow float64; raise beta"
        )
    with np.errstate(over="ignore"):  # shifted by max r: r/β cannot overflow to inf − inf
        log_optimum = log_softmax(np.log(ref) + (reward - reward.max()) / beta)
    optimum = np.exp(log_optimum)
    direction = _agro_direction if estimator == "agro" else _naive_direction
    record = set(np.unique(np.linspace(0, iterations, checkpoints + 1).round().astype(int)).tolist())
    columns = {"iteration": [], "kl": [], "consistency_spread": [], "loss": []}
    history: list[np.ndarray] = []
    clock = Stopwatch()

    def log(t, probs):
        # log space throughout: π and π* may underflow (β = 1e-6 makes π* nearly greedy)
        log_probs = log_softmax(logits)
        regularized = reward - beta * (log_probs - np.log(ref))
        columns["iteration"].append(t)
        columns["kl"].append(float(np.sum(np.where(probs > 0, probs * (log_probs - log_optimum), 0.0))))
        columns["consistency_spread"].append(float(regularized.max() - regularized.min()))
        centred = regularized - np.dot(ref, regularized)
        columns["loss"].append(float(np.dot(ref, centred**2) / (2.0 * beta)))

    with clock.running():
        probs = softmax(logits)
        log(0, probs)
        for t in range(1, iterations + 1):
            if sampling == "on_policy":
                mu = probs
            elif sampling == "reference":
                mu = ref
            elif sampling == "mixture":
                mu = mixture_weight * ref + (1.0 - mixture_weight) * probs
            elif sampling == "replay":
                history.append(probs)
                if len(history) > replay_window:
                    history.pop(0)
                mu = np.mean(history, axis=0)
            else:
                mu = fixed
            if batch_size is None:
                step = direction(probs, reward, ref, beta, mu, log_softmax(logits))
            else:
                samples = _sample(rng, mu, batch_size)
                values = reward[samples]
                log_ratio = log_softmax(logits)[samples] - np.log(ref[samples])
                if estimator == "agro":
                    values = values - beta * log_ratio
                loo = (values.sum() - values) / (batch_size - 1)
                weights = values - loo
                if estimator == "naive":
                    weights = weights - beta * log_ratio
                step = (weights[:, None] * _score(probs, samples)).mean(axis=0)
            logits = logits + learning_rate * step
            probs = softmax(logits)
            if t in record:
                log(t, probs)
    metrics = {key: np.asarray(value) for key, value in columns.items()}
    return SolverResult(
        final=probs,
        metrics=metrics,
        wall_time_s=clock.wall_s,
        compile_time_s=0.0,
        config={
            "solver": "train_agro",
            "reward": reward,
            "ref": ref,
            "beta": beta,
            "sampling": sampling,
            "estimator": estimator,
            "iterations": iterations,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "init_logits": None if init_logits is None else np.asarray(init_logits),
            "sampling_distribution": fixed,
            "replay_window": replay_window,
            "mixture_weight": mixture_weight,
            "checkpoints": checkpoints,
            "seed": seed if not isinstance(seed, np.random.Generator) else "generator",
        },
        extras={"optimal_policy": optimum},
    )
