"""JEPO — chain of thought as a latent variable, trained with Jensen's evidence lower bound.

Tang, Wang, Madaan, Munos, "Learning to chain-of-thought with Jensen's evidence lower bound"
(arXiv 2503.19618, eqs. 3–7). Tabular model for one prompt x:

  q(c) = softmax(φ)            [C]      chain-of-thought distribution π_θ(c | x)
  p(a | c) = softmax(ψ[c])     [C, A]   answer distribution π_θ(a | x, c)

and a ground-truth answer a*. Write ℓ(c) = p(a* | c). The evidence is log π(a*) = log Σ_c q(c) ℓ(c).

  Jensen bound (eq. 3)       L⁽¹⁾ = E_{c∼q}[log ℓ(c)],  gap log π(a*) − L⁽¹⁾ = KL(q ‖ posterior),
                             posterior(c) ∝ q(c) ℓ(c)
  multi-sample bound (eq. 6) L⁽ⁿ⁾ = E_{c_{1:n}∼q}[log((1/n) Σ_i ℓ(c_i))],  L⁽ⁿ⁾ ≤ L⁽ⁿ⁺¹⁾ → log π(a*)

Gradient estimators from n sampled CoTs (leave-one-out baselines keep them unbiased):

  eq. 5 ("single"): (1/n) Σ_i (log ℓ(c_i) − v_i) ∇ log q(c_i) + (1/n) Σ_i ∇ log ℓ(c_i),
                    v_i = mean_{j≠i} log ℓ(c_j)                       (unbiased for ∇L⁽¹⁾)
  eq. 7 ("multi"):  Σ_i (F − ṽ_i) ∇ log q(c_i) + ∇ F,  F = log((1/n) Σ_j ℓ(c_j)),
                    ṽ_i = log((1/(n−1)) Σ_{j≠i} ℓ(c_j))             (unbiased for ∇L⁽ⁿ⁾)

Baselines compared in training: RL on the exact-match reward 1{a = a*} (objective π(a*), RLOO
estimator) and SFT on the answer (∇_ψ E_{c∼q} log ℓ(c), CoT distribution left untouched). With a
single CoT (C = 1) every JEPO gradient is the SFT gradient.

Shapes: C chains of thought, A answers, n samples.

Valid range: target ∈ [0, A), n ≥ 1 with at most ``MAX_COMPOSITIONS`` CoT count vectors where
the multi-sample bound is enumerated, likelihoods in [0, 1] with some mass, finite logits,
boolean flags True/False only, iterations within the work budget. Outside it ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from ..envs.checks import (
    as_float_array,
    as_generator,
    check_choice,
    check_distribution,
    check_indices,
    check_bool,
    check_int,
    check_scalar,
    check_size_budget,
)
from ._jit import Stopwatch
from .core.mirror import kl_divergence, softmax, softmax_policy_gradient
from .core.result import SolverResult
from .inference_objectives import (
    MAX_COMPOSITIONS,
    _composition_count,
    _compositions,
    _multinomial_probs,
)

__all__ = [
    "cot_posterior",
    "jensen_bound",
    "jepo_expected_gradient",
    "jepo_gradient",
    "log_evidence",
    "multi_sample_bound",
    "rl_gradient",
    "train_cot",
]

BOUNDS = ("single", "multi")
METHODS = ("jepo", "jepo_multi", "rl", "sft")


def _check_enumeration(n, parts):
    """Exact bounds enumerate the C(n + C − 1, C − 1) CoT count vectors: refuse n up front when
    that exceeds ``MAX_COMPOSITIONS``; returns the work of one enumeration (count · C)."""
    count = _composition_count(n, parts)
    if count > MAX_COMPOSITIONS:
        raise ValueError(
            f"n={n} with {parts} chains of thought needs about {count:.3g} count vectors "
            f"(limit {MAX_COMPOSITIONS}); reduce n"
        )
    return count * parts

def _check_bound_inputs(cot_probs, answer_likelihood):
    cot_probs = check_distribution("cot_probs", cot_probs, ndim=1)
    answer_likelihood = as_float_array("answer_likelihood", answer_likelihood, shape=cot_probs.shape)
    if np.any(answer_likelihood <= 0) or np.any(answer_likelihood > 1):
        raise ValueError(
            f"answer_likelihood must lie in (0, 1], got {answer_likelihood!r}"
        )
    return cot_probs, answer_likelihood


def log_evidence(cot_probs, answer_likelihood) -> float:
    """log π(a*) = log Σ_c q(c) ℓ(c). Args: cot_probs [C]; answer_likelihood ℓ [C] in (0, 1].

    Valid range: no numeric arguments; cot_probs [C] a distribution; answer_likelihood [C] in [0, 1]
    with some mass.
    """
    q, lik = _check_bound_inputs(cot_probs, answer_likelihood)
    return float(np.log(np.dot(q, lik)))


def cot_posterior(cot_probs, answer_likelihood) -> np.ndarray:
    """Posterior over CoTs given the answer: q(c) ℓ(c) / Σ q ℓ, [C] (arXiv 2503.19618, eq. 3).

    Valid range: no numeric arguments; cot_probs [C] a distribution; answer_likelihood [C] in [0, 1]
    with some mass.
    """
    q, lik = _check_bound_inputs(cot_probs, answer_likelihood)
    joint = q * lik
    return joint / joint.sum()


def jensen_bound(cot_probs, answer_likelihood) -> float:
    """L⁽¹⁾ = Σ_c q(c) log ℓ(c) ≤ log π(a*) (eq. 3). Shapes as ``log_evidence``.

    Valid range: no numeric arguments; cot_probs [C] a distribution; answer_likelihood [C] in [0, 1]
    with some mass.
    """
    q, lik = _check_bound_inputs(cot_probs, answer_likelihood)
    return float(np.dot(q, np.log(lik)))


def multi_sample_bound(cot_probs, answer_likelihood, n) -> float:
    """L⁽ⁿ⁾ = E_{c_{1:n}∼q}[log((1/n) Σ_i ℓ(c_i))] (eq. 6), exactly, by summing over CoT counts.

    Args: as ``log_evidence``; n ≥ 1 (L⁽¹⁾ is the Jensen bound).

    Valid range: n ≥ 1 (an int; the C^n enumeration within the work budget).
    """
    q, lik = _check_bound_inputs(cot_probs, answer_likelihood)
    n = check_int("n", n, low=1)
    _check_enumeration(n, q.shape[0])
    counts = _compositions(n, q.shape[0])
    return float(np.dot(_multinomial_probs(counts, q), np.log(counts @ lik / n)))


def _check_model(cot_logits, answer_logits, target, names=("cot_logits", "answer_logits")):
    cot_logits = as_float_array(names[0], cot_logits, ndim=1)
    answer_logits = as_float_array(names[1], answer_logits, ndim=2)
    if answer_logits.shape[0] != cot_logits.shape[0]:
        raise ValueError(
            f"{names[1]} must have shape ({cot_logits.shape[0]}, A), got {answer_logits.shape}"
        )
    target = check_int("target", target, low=0, high=answer_logits.shape[1] - 1)
    return cot_logits, answer_logits, target


def _answer_score(answer_probs, target):
    """∇_ψ[c] log p(a* | c) = e_{a*} − p(· | c), for every c: [C, A]."""
    score = -answer_probs.copy()
    score[:, target] += 1.0
    return score


def jepo_gradient(cot_logits, answer_logits, target, samples, *, bound="single"):
    """JEPO's sample-based gradient (eq. 5 for "single", eq. 7 for "multi"), with LOO baselines.

    Args:
      cot_logits: [C] φ; answer_logits: [C, A] ψ; target: a* in [0, A).
      samples: [n] sampled CoT indices c_i ∼ q (n ≥ 1; with n = 1 no baseline is used).
      bound: "single" (ascent on L⁽¹⁾) or "multi" (ascent on L⁽ⁿ⁾ with n = len(samples)).

    Returns:
      (gradient for φ [C], gradient for ψ [C, A]) — unbiased for ∇L⁽¹⁾ or ∇L⁽ⁿ⁾.

    Valid range: target an int in [0, A); samples indices in [0, C).
    """
    cot_logits, answer_logits, target = _check_model(cot_logits, answer_logits, target)
    bound = check_choice("bound", bound, BOUNDS)
    samples_array = check_indices("samples", samples, upper=cot_logits.shape[0])
    return _estimate(softmax(cot_logits), softmax(answer_logits), target, samples_array, bound)


def _estimate(q, answer_probs, target, samples, bound):
    n = samples.shape[0]
    log_lik = np.log(answer_probs[:, target])
    cot_score = np.eye(q.shape[0])[samples] - q
    answer_score = _answer_score(answer_probs, target)
    answer_gradient = np.zeros_like(answer_probs)
    if bound == "single":
        values = log_lik[samples]
        baseline = (values.sum() - values) / (n - 1) if n > 1 else np.zeros(n)
        cot_gradient = ((values - baseline) @ cot_score) / n
        np.add.at(answer_gradient, samples, answer_score[samples] / n)
        return cot_gradient, answer_gradient
    likelihoods = np.exp(log_lik[samples])
    total = likelihoods.sum()
    mean_log = np.log(total / n)
    if n > 1:
        baseline = np.log((total - likelihoods) / (n - 1))
    else:
        baseline = np.zeros(n)
    cot_gradient = (mean_log - baseline) @ cot_score
    np.add.at(answer_gradient, samples, (likelihoods / total)[:, None] * answer_score[samples])
    return cot_gradient, answer_gradient


def _exact(q, answer_probs, target, n, bound):
    log_lik = np.log(answer_probs[:, target])
    answer_score = _answer_score(answer_probs, target)
    if bound == "single" or n == 1:
        return softmax_policy_gradient(q, log_lik), q[:, None] * answer_score
    counts = _compositions(n, q.shape[0])
    weights = _multinomial_probs(counts, q)
    likelihood = np.exp(log_lik)
    mixture = counts @ likelihood
    value = np.log(mixture / n)
    cot_gradient = (weights * value) @ (counts - n * q[None, :])
    responsibility = (weights / mixture) @ counts * likelihood  # Σ_m P(m) m_c ℓ(c) / (m·ℓ)
    return cot_gradient, responsibility[:, None] * answer_score


def jepo_expected_gradient(cot_logits, answer_logits, target, n=1, *, bound="single"):
    """Exact ∇L⁽¹⁾ ("single") or ∇L⁽ⁿ⁾ ("multi") with respect to (φ [C], ψ [C, A]).

    ∇_φ L⁽ⁿ⁾ = E[F(m)(m − n q)] and ∇_ψ[c] L⁽ⁿ⁾ = E[m_c ℓ(c)/(m·ℓ)] (e_{a*} − p(·|c)) over CoT
    counts m ∼ Multinomial(n, q), F(m) = log(m·ℓ/n); for n = 1 these are the closed forms of eq. 4.

    Valid range: target an int in [0, A); n ≥ 1 (an int; bound='multi' enumerates C(n + C − 1, C −
    1) ≤ 2·10⁶ count vectors).
    """
    cot_logits, answer_logits, target = _check_model(cot_logits, answer_logits, target)
    n = check_int("n", n, low=1)
    bound = check_choice("bound", bound, BOUNDS)
    if bound == "multi":  # the single-sample bound does not depend on n
        _check_enumeration(n, cot_logits.shape[0])
    return _exact(softmax(cot_logits), softmax(answer_logits), target, n, bound)


def rl_gradient(cot_logits, answer_logits, target, cots, answers=None):
    """RLOO gradient of the exact-match objective π(a*) = Σ_c q(c) p(a*|c) from n samples.

    With ``answers`` (vanilla RLOO on (c_i, a_i), reward r_i = 1{a_i = a*}):
      (1/n) Σ_i (r_i − mean_{j≠i} r_j) [∇ log q(c_i) + ∇ log p(a_i|c_i)].
    Without (the variance-reduced PG of JEPO's Definition D.3, the conditional expectation of the
    former given the CoTs, hence of no larger variance, Theorem D.5):
      (1/n) Σ_i [(ℓ(c_i) − mean_{j≠i} ℓ(c_j)) ∇ log q(c_i) + ∇_ψ ℓ(c_i)],  ℓ(c) = p(a*|c).

    Args:
      cot_logits: [C]; answer_logits: [C, A]; target: a*; cots: [n] CoT indices (n ≥ 2);
      answers: [n] answer indices, or None.

    Returns:
      (gradient for φ [C], gradient for ψ [C, A]), both unbiased for ∇π(a*).

    Valid range: target an int in [0, A); cots [n ≥ 2] indices in [0, C).
    """
    cot_logits, answer_logits, target = _check_model(cot_logits, answer_logits, target)
    cots = check_indices("cots", cots, upper=cot_logits.shape[0], min_size=2)
    q, answer_probs = softmax(cot_logits), softmax(answer_logits)
    n = cots.shape[0]
    cot_score = np.eye(q.shape[0])[cots] - q
    answer_gradient = np.zeros_like(answer_probs)
    if answers is None:
        likelihood = answer_probs[cots, target]
        advantages = likelihood - (likelihood.sum() - likelihood) / (n - 1)
        score = _answer_score(answer_probs, target)[cots]
        np.add.at(answer_gradient, cots, likelihood[:, None] * score / n)
        return (advantages @ cot_score) / n, answer_gradient
    answers = check_indices("answers", answers, upper=answer_logits.shape[1], shape=cots.shape)
    rewards = (answers == target).astype(np.float64)
    advantages = rewards - (rewards.sum() - rewards) / (n - 1)
    score = np.eye(answer_probs.shape[1])[answers] - answer_probs[cots]
    np.add.at(answer_gradient, cots, advantages[:, None] * score / n)
    return (advantages @ cot_score) / n, answer_gradient


def _rl_exact(q, answer_probs, target):
    """∇ π(a*) for π(a*) = Σ_c q(c) p(a*|c): (φ part [C], ψ part [C, A])."""
    likelihood = answer_probs[:, target]
    return (
        softmax_policy_gradient(q, likelihood),
        (q * likelihood)[:, None] * _answer_score(answer_probs, target),
    )


def train_cot(
    init_cot_logits,
    init_answer_logits,
    target,
    method="jepo",
    *,
    n=4,
    iterations=500,
    learning_rate=1.0,
    sampled=False,
    checkpoints=50,
    seed=0,
) -> SolverResult:
    """Train the CoT model (φ, ψ) by JEPO, multi-sample JEPO, RL on exact match, or SFT on the answer.

    Methods (θ ← θ + η g):
      "jepo"        g = ∇L⁽¹⁾ (exact) or eq. 5 with n samples;
      "jepo_multi"  g = ∇L⁽ⁿ⁾ (exact) or eq. 7 with n samples;
      "rl"          g = ∇π(a*) (exact) or RLOO on reward 1{a_i = a*} over n samples (c_i, a_i);
      "sft"         g = ∇_ψ E_{c∼q} log p(a*|c) (exact) or its n-sample average; φ is not trained.

    Args:
      init_cot_logits: [C]; init_answer_logits: [C, A]; target: a*; n ≥ 1 (≥ 2 for sampled "rl").

    Returns:
      SolverResult: final = [C] CoT distribution; metrics "iteration", "log_evidence" (log π(a*)),
      "accuracy" (π(a*)), "jensen_bound" (L⁽¹⁾), "bound_n" (L⁽ⁿ⁾), "kl" (KL(q ‖ posterior), the
      Jensen gap); extras "answer_probs" [C, A].

    Valid range: target an int in [0, A); n ≥ 1 (≥ 2 for method='rl' with sampled=True), iterations
    ≥ 1 and checkpoints ≥ 1 (ints, iterations within the work budget); learning_rate > 0 (finite).
    """
    cot_logits, answer_logits, target = _check_model(
        init_cot_logits, init_answer_logits, target, ("init_cot_logits", "init_answer_logits")
    )
    cot_logits, answer_logits = cot_logits.copy(), answer_logits.copy()
    method = check_choice("method", method, METHODS)
    sampled = check_bool("sampled", sampled)
    n = check_int("n", n, low=2 if (sampled and method == "rl") else 1)
    iterations = check_int("iterations", iterations, low=1)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    checkpoints = check_int("checkpoints", checkpoints, low=1)
    check_size_budget("checkpoints", checkpoints, memory_bytes=8.0 * 16 * checkpoints)
    # the L⁽ⁿ⁾ metric (and the exact multi-sample gradient) enumerate the CoT count vectors
    enumeration = _check_enumeration(n, cot_logits.shape[0])
    per_iteration = float(n) * answer_logits.size if sampled else enumeration + answer_logits.size
    check_size_budget("iterations", iterations, work=float(iterations) * per_iteration)
    rng = as_generator("seed", seed)
    record = set(np.unique(np.linspace(0, iterations, checkpoints + 1).round().astype(int)).tolist())
    names = ("iteration", "log_evidence", "accuracy", "jensen_bound", "bound_n", "kl")
    columns: dict[str, list] = {name: [] for name in names}
    counts = _compositions(n, cot_logits.shape[0])
    clock = Stopwatch()

    def log(t, q, answer_probs):
        likelihood = answer_probs[:, target]
        joint = q * likelihood
        columns["iteration"].append(t)
        columns["log_evidence"].append(float(np.log(joint.sum())))
        columns["accuracy"].append(float(joint.sum()))
        columns["jensen_bound"].append(float(np.dot(q, np.log(likelihood))))
        columns["bound_n"].append(
            float(np.dot(_multinomial_probs(counts, q), np.log(counts @ likelihood / n)))
        )
        columns["kl"].append(float(kl_divergence(q, joint / joint.sum())))

    with clock.running():
        q, answer_probs = softmax(cot_logits), softmax(answer_logits)
        log(0, q, answer_probs)
        for t in range(1, iterations + 1):
            if not sampled:
                if method == "rl":
                    cot_step, answer_step = _rl_exact(q, answer_probs, target)
                else:
                    bound = "multi" if method == "jepo_multi" else "single"
                    cot_step, answer_step = _exact(q, answer_probs, target, n, bound)
            else:
                cots = np.minimum(
                    np.searchsorted(np.cumsum(q), rng.random(n) * q.sum(), side="right"), q.shape[0] - 1
                )
                if method == "rl":
                    cdf = np.cumsum(answer_probs[cots], axis=1)
                    answers = (rng.random(n)[:, None] * cdf[:, -1:] >= cdf).sum(axis=1)
                    answers = np.minimum(answers, answer_probs.shape[1] - 1)
                    cot_step, answer_step = rl_gradient(cot_logits, answer_logits, target, cots, answers)
                else:
                    bound = "multi" if method == "jepo_multi" else "single"
                    cot_step, answer_step = _estimate(q, answer_probs, target, cots, bound)
            if method == "sft":
                cot_step = np.zeros_like(cot_step)
            cot_logits = cot_logits + learning_rate * cot_step
            answer_logits = answer_logits + learning_rate * answer_step
            q, answer_probs = softmax(cot_logits), softmax(answer_logits)
            if t in record:
                log(t, q, answer_probs)
    return SolverResult(
        final=q,
        metrics={key: np.asarray(value) for key, value in columns.items()},
        wall_time_s=clock.wall_s,
        compile_time_s=0.0,
        config={
            "solver": "train_cot",
            "init_cot_logits": np.asarray(init_cot_logits),
            "init_answer_logits": np.asarray(init_answer_logits),
            "target": target,
            "method": method,
            "n": n,
            "iterations": iterations,
            "learning_rate": learning_rate,
            "sampled": bool(sampled),
            "checkpoints": checkpoints,
            "seed": seed if not isinstance(seed, np.random.Generator) else "generator",
        },
        extras={"answer_probs": answer_probs},
    )
