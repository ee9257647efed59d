"""Inference-time k-sample objectives on softmax bandits (Tang, Zheng, Synnaeve, Munos, ICML 2025).

The policy π_θ = softmax(θ) over K responses is trained for E_{y_1..y_k ∼ π^{⊗k}}[f(y_1..y_k)]
(Tang, Zheng, Synnaeve & Munos 2025, arXiv 2503.19595, the k-sample objective) with

  mean           f = (1/k) Σ_i r(y_i)
  pass_at_k      f = max_i r(y_i)
  majority_vote  f = R(maj(a_1..a_k)), a_i the answer carried by y_i and R(a) its reward.

**Tie rule for the majority vote.** When several answers share the largest count, the vote is
broken uniformly at random among them and f is its expectation: the mean of R over the tied
answers. (The paper does not say; this rule keeps f symmetric in the samples and deterministic.)
On the empty tuple f = 0 for every objective, so the leave-one-out estimator with k = 1 is
REINFORCE without a baseline (derived; checked in the tests).

Leave-one-out (LOO) estimator (Tang, Zheng, Synnaeve & Munos 2025, arXiv 2503.19595, Lemma 1): ĝ = Σ_i (f(y_{1:k}) − f(y_{−i})) ∇ log π(y_i),
unbiased because f(y_{−i}) does not depend on y_i. The centred variant Ā_i = A_i − mean_j A_j is
biased (it densifies the pass@k signal).

Exact objective values and gradients: closed forms for mean (Σ π r) and pass@k
(E max = r_(1) + Σ_j (r_(j+1) − r_(j))(1 − F_j^k) over rewards sorted ascending, F the CDF), and
for the majority vote a sum over the multinomial answer counts (compositions of k into A answer
classes), with ∂E/∂q_a = k E_{c ∼ Mult(k−1, q)}[f(c + e_a)].

Shapes: K responses, k samples per group, A distinct answers, X prompts (contexts).

Valid range: k ≥ 1 (any k for mean and pass@k, which have closed forms; the majority vote
enumerates at most ``MAX_COMPOSITIONS`` answer-count vectors), finite logits (±700 and beyond:
log-probabilities are used), answer labels validated whenever given, boolean flags True/False
only, iterations within the work budget. Outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.special import gammaln

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
from .core.advantages import leave_one_out_advantages as batched_leave_one_out_advantages
from .core.mirror import softmax, softmax_policy_gradient
from .core.result import SolverResult

__all__ = [
    "OBJECTIVES",
    "k_sample_gradient",
    "k_sample_objective",
    "leave_one_out_advantages",
    "objective_gradient",
    "objective_value",
    "train_k_sample",
]

OBJECTIVES = ("mean", "pass_at_k", "majority_vote")
MAX_COMPOSITIONS = 2_000_000


def _check_answers(name, answers, shape):
    array = np.asarray(answers)
    if array.shape != tuple(shape) or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be an integer array of shape {tuple(shape)}, got {answers!r}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative answer labels, got {answers!r}")
    return array.astype(np.int64)


def _answer_table(rewards, answers, name="rewards"):
    """Map answer label → reward, checking that equal answers carry equal rewards."""
    table: dict[int, float] = {}
    for answer, reward in zip(answers.tolist(), rewards.tolist()):
        if answer in table and table[answer] != reward:
            raise ValueError(
                f"{name} must be equal for responses with the same answer, got answer {answer} "
                f"with rewards {table[answer]!r} and {reward!r}"
            )
        table[answer] = reward
    return table


def _majority_from_counts(counts, answer_rewards):
    """f for answer-count rows [C, A] (tie → mean reward of the tied answers); 0 for empty rows."""
    top = counts.max(axis=-1, keepdims=True)
    tied = (counts == top) & (top > 0)
    number_tied = tied.sum(axis=-1)
    total = (tied * answer_rewards).sum(axis=-1)
    return np.where(number_tied > 0, total / np.maximum(number_tied, 1), 0.0)


def _f(rewards, objective, answers):
    if rewards.size == 0:
        return 0.0
    if objective == "mean":
        return float(rewards.mean())
    if objective == "pass_at_k":
        return float(rewards.max())
    labels, inverse = np.unique(answers, return_inverse=True)
    counts = np.bincount(inverse, minlength=labels.size).astype(np.float64)
    answer_rewards = np.zeros(labels.size)
    answer_rewards[inverse] = rewards
    return float(_majority_from_counts(counts[None, :], answer_rewards)[0])


def _check_tuple(rewards, objective, answers):
    rewards = as_float_array("rewards", rewards, ndim=1)
    objective = check_choice("objective", objective, OBJECTIVES)
    if answers is not None:  # validated whenever given (used by the majority vote only)
        answers = _check_answers("answers", answers, rewards.shape)
    if objective == "majority_vote":
        if answers is None:
            raise ValueError("answers must be given for objective='majority_vote', got None")
        _answer_table(rewards, answers)
    return rewards, objective, answers


def k_sample_objective(rewards, objective, answers=None) -> float:
    """f(y_1..y_k) for one group (the k-sample objectives of arXiv 2503.19595).

    Args:
      rewards: [k] rewards r(y_i) (k ≥ 0; f of the empty group is 0).
      objective: "mean", "pass_at_k" or "majority_vote".
      answers: [k] integer answer labels (majority vote only; equal answers must carry equal
        rewards). Ties in the vote → the mean reward of the tied answers (module docstring).

    Valid range: no numeric arguments; rewards [k ≥ 0] finite.
    """
    rewards, objective, answers = _check_tuple(rewards, objective, answers)
    return _f(rewards, objective, answers)


def leave_one_out_advantages(rewards, objective="pass_at_k", answers=None, *, centered=False):
    """Leave-one-out advantages A_i = f(y_{1:k}) − f(y_{−i}) (the paper's Lemma 1; unbiased), one group.

    The batched [G, k] form, shared with the torch trainers, is
    ``fixpoint_rl.tabular.core.advantages.leave_one_out_advantages``; this validates one group and
    calls it.

    With ``centered=True``: Ā_i = A_i − (1/k) Σ_j A_j (the biased, denser variant).

    pass@k: only a unique best sample gets a nonzero advantage, r_(k) − r_(k−1); ties at the max give
    all zeros (hand-computed examples in the tests). mean: A_i = (r_i − mean_{j≠i} r_j)/k, i.e. RLOO / k. k = 1:
    A = f(y_1) (REINFORCE without a baseline).

    Args:
      rewards: [k] rewards, k ≥ 1; objective: as ``k_sample_objective``; answers: [k] (majority).

    Returns:
      [k] advantages.

    Valid range: no numeric arguments; rewards [k ≥ 1] finite.
    """
    rewards, objective, answers = _check_tuple(rewards, objective, answers)
    centered = check_bool("centered", centered)
    k = rewards.shape[0]
    if k < 1:
        raise ValueError(f"rewards must hold k ≥ 1 samples, got k = {k}")
    group_answers = None if objective != "majority_vote" else answers[None, :]
    return batched_leave_one_out_advantages(
        rewards[None, :], objective, group_answers, centered=centered
    )[0]


def k_sample_gradient(
    logits, samples, response_reward, objective, response_answer=None, *, centered=False
) -> np.ndarray:
    """LOO estimate Σ_i A_i ∇_θ log π_θ(y_i) = Σ_i A_i (e_{y_i} − π) for one group of k samples.

    Args:
      logits: [K]; samples: [k] response indices; response_reward: [K] rewards r(y);
      objective: see ``OBJECTIVES``; response_answer: [K] answer labels (majority vote).
      centered: use the centred (biased) advantages.

    Returns:
      [K] gradient estimate with respect to θ.

    Valid range: no numeric arguments; samples indices in [0, K); logits, response_reward [K]
    finite.
    """
    logits = as_float_array("logits", logits, ndim=1)
    response_reward = as_float_array("response_reward", response_reward, shape=logits.shape)
    objective = check_choice("objective", objective, OBJECTIVES)
    samples_array = check_indices("samples", samples, upper=logits.shape[0])
    centered = check_bool("centered", centered)
    answers = None
    if response_answer is not None:  # validated whenever given (used by the majority vote only)
        response_answer = _check_answers("response_answer", response_answer, logits.shape)
    if objective == "majority_vote":
        if response_answer is None:
            raise ValueError("response_answer must be given for objective='majority_vote'")
        answers = response_answer[samples_array]
    advantages = leave_one_out_advantages(
        response_reward[samples_array], objective, answers, centered=centered
    )
    probs = softmax(logits)
    score = np.eye(logits.shape[0])[samples_array] - probs
    return advantages @ score


def _compositions(total, parts):
    """All count vectors of ``total`` into ``parts`` non-negative parts: [C, parts] (stars and bars)."""
    number = math.comb(total + parts - 1, parts - 1)
    if number > MAX_COMPOSITIONS:
        raise ValueError(
            f"k must be small enough to enumerate {number} answer-count vectors (limit "
            f"{MAX_COMPOSITIONS}); got k = {total} with {parts} answers"
        )
    if parts == 1:
        return np.array([[total]], dtype=np.float64)
    bars = np.array(list(itertools.combinations(range(total + parts - 1), parts - 1)), dtype=np.int64)
    bars = bars.reshape(-1, parts - 1)
    edges = np.concatenate(
        [np.full((bars.shape[0], 1), -1), bars, np.full((bars.shape[0], 1), total + parts - 1)], axis=1
    )
    return (np.diff(edges, axis=1) - 1).astype(np.float64)


def _multinomial_probs(counts, probs):
    total = counts.sum(axis=1)
    log_coefficient = gammaln(total + 1) - gammaln(counts + 1).sum(axis=1)
    with np.errstate(divide="ignore"):
        log_probs = np.where(counts > 0, counts * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    zero_hit = ((counts > 0) & (probs <= 0)).any(axis=1)
    return np.where(zero_hit, 0.0, np.exp(log_coefficient + log_probs.sum(axis=1)))


def _composition_count(total: int, parts: int) -> float:
    """C(total + parts − 1, parts − 1) as a float (inf when astronomically large)."""
    import math

    if parts <= 1:
        return 1.0
    # log C(total + parts − 1, parts − 1) = Σ_{i<parts} log((total + i)/i): exact for huge totals
    # (differences of lgamma values lose all precision near 2⁶³)
    log_count = sum(math.log((total + i) / i) for i in range(1, parts))
    return math.exp(min(log_count, 700.0))


def _check_bandit(probs_name, probs, response_reward, objective, k, response_answer):
    response_reward = as_float_array("response_reward", response_reward, shape=probs.shape)
    objective = check_choice("objective", objective, OBJECTIVES)
    k = check_int("k", k, low=1)
    classes = None
    if response_answer is not None:  # validated whenever given (used by the majority vote only)
        response_answer = _check_answers("response_answer", response_answer, probs.shape)
    if objective == "majority_vote":
        if response_answer is None:
            raise ValueError("response_answer must be given for objective='majority_vote', got None")
        table = _answer_table(response_reward, response_answer, "response_reward")
        labels = np.array(sorted(table))
        classes = (np.searchsorted(labels, response_answer), np.array([table[a] for a in labels]))
    return response_reward, objective, k, classes


def _value_and_response_gradient(probs, reward, objective, k, classes):
    """Exact E_{π^{⊗k}} f and its gradient with respect to π (an extension off the simplex)."""
    if objective == "mean":
        return float(np.dot(probs, reward)), reward.copy()
    if objective == "pass_at_k":
        order = np.argsort(reward, kind="stable")
        sorted_reward = reward[order]
        cdf = np.cumsum(probs[order])[:-1]
        steps = np.diff(sorted_reward)
        value = sorted_reward[0] + float(np.dot(steps, 1.0 - cdf**k))
        # ∂/∂π_(l) = −k Σ_{j ≥ l} (r_(j+1) − r_(j)) F_j^{k−1}
        terms = -k * steps * cdf ** (k - 1)
        sorted_gradient = np.concatenate([np.cumsum(terms[::-1])[::-1], [0.0]])
        gradient = np.empty_like(probs)
        gradient[order] = sorted_gradient
        return value, gradient
    class_of, answer_rewards = classes
    class_probs = np.bincount(class_of, weights=probs, minlength=answer_rewards.size)
    counts = _compositions(k, answer_rewards.size)
    majority = _majority_from_counts(counts, answer_rewards)
    value = float(np.dot(_multinomial_probs(counts, class_probs), majority))
    smaller = _compositions(k - 1, answer_rewards.size)
    weights = _multinomial_probs(smaller, class_probs)
    class_gradient = np.empty(answer_rewards.size)
    for a in range(answer_rewards.size):
        grown = smaller.copy()
        grown[:, a] += 1.0
        class_gradient[a] = k * np.dot(weights, _majority_from_counts(grown, answer_rewards))
    return value, class_gradient[class_of]


def objective_value(probs, response_reward, objective, k, response_answer=None) -> float:
    """Exact E_{y_{1:k} ∼ π^{⊗k}}[f] (closed forms / enumeration of answer counts).

    Args:
      probs: [K] policy; response_reward: [K]; objective: see ``OBJECTIVES``; k ≥ 1;
      response_answer: [K] answer labels (majority vote; equal answers need equal rewards).

    Returns:
      The expected objective. pass@k with binary rewards is 1 − (1 − π(correct))^k.

    Valid range: k ≥ 1 (an int; any k for mean and pass@k, which are closed forms; majority vote
    enumerates C(k + A − 1, A − 1) ≤ 2·10⁶ answer counts).
    """
    probs = check_distribution("probs", probs, ndim=1)
    reward, objective, k, classes = _check_bandit(
        "probs", probs, response_reward, objective, k, response_answer
    )
    return _value_and_response_gradient(probs, reward, objective, k, classes)[0]


def objective_gradient(logits, response_reward, objective, k, response_answer=None) -> np.ndarray:
    """Exact ∇_θ E_{π_θ^{⊗k}}[f] for π_θ = softmax(θ): [K] (the expectation of the LOO estimator).

    Valid range: k ≥ 1 (an int; any k for mean and pass@k, which are closed forms; majority vote
    enumerates C(k + A − 1, A − 1) ≤ 2·10⁶ answer counts).
    """
    logits = as_float_array("logits", logits, ndim=1)
    probs = softmax(logits)
    reward, objective, k, classes = _check_bandit(
        "logits", probs, response_reward, objective, k, response_answer
    )
    gradient = _value_and_response_gradient(probs, reward, objective, k, classes)[1]
    return softmax_policy_gradient(probs, gradient)


def _sample_rows(rng, probs, n):
    """n samples from each row of probs [X, K] → [X, n] indices."""
    cdf = np.cumsum(probs, axis=1)
    uniforms = rng.random((probs.shape[0], n)) * cdf[:, -1:]
    draws = (uniforms[:, :, None] >= cdf[:, None, :]).sum(axis=2)
    return np.minimum(draws, probs.shape[1] - 1)


def train_k_sample(
    init_logits,
    response_reward,
    objective,
    k,
    *,
    response_answer=None,
    iterations=500,
    learning_rate=1.0,
    sampled=False,
    centered=False,
    eval_ks=(1, 4, 16),
    checkpoints=50,
    seed=0,
) -> SolverResult:
    """Gradient ascent on E_{π^{⊗k}} f for X independent prompts, exact or with LOO samples.

    Each prompt x has its own softmax policy softmax(θ[x]); θ ← θ + η g with g the exact gradient
    (``sampled=False``; it equals the LOO estimator's expectation) or the LOO estimate from one group
    of k samples per prompt and step (``sampled=True``, optionally ``centered``).

    Args:
      init_logits: [X, K] (or [K]) initial logits; response_reward: same shape.
      objective: see ``OBJECTIVES``; k ≥ 1 (k = 1 with "pass_at_k" is plain REINFORCE/mean).
      response_answer: [X, K] answer labels (majority vote).
      eval_ks: the k's of the pass@k metrics recorded (mean over prompts, exact).

    Returns:
      SolverResult: final [X, K] policies; metrics "iteration", "objective" (the trained objective,
      exact, mean over prompts) and "pass_at_<m>" for m in ``eval_ks``.

    Valid range: k ≥ 1, iterations ≥ 1 and checkpoints ≥ 1 (ints, iterations within the work
    budget); learning_rate > 0 (finite).
    """
    logits = as_float_array("init_logits", init_logits, ndim=(1, 2), copy=True)
    if logits.ndim == 1:
        logits = logits[None, :]
    reward = as_float_array("response_reward", response_reward, ndim=(1, 2))
    if reward.ndim == 1:
        reward = reward[None, :]
    if reward.shape != logits.shape:
        raise ValueError(
            f"response_reward must have the shape of init_logits {logits.shape}, got {reward.shape}"
        )
    objective = check_choice("objective", objective, OBJECTIVES)
    k = check_int("k", k, low=1)
    iterations = check_int("iterations", iterations, low=1)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    checkpoints = check_int("checkpoints", checkpoints, low=1)
    check_size_budget("checkpoints", checkpoints, memory_bytes=8.0 * 16 * checkpoints)
    eval_ks = tuple(check_int("eval_ks", m, low=1) for m in eval_ks)
    sampled = check_bool("sampled", sampled)
    centered = check_bool("centered", centered)
    # per iteration and prompt: k draws (sampled) or the exact objective (≈ K log K, or the
    # enumeration of answer-count vectors for the majority vote, itself capped)
    per_prompt = logits.shape[1] * (k + 1) if sampled else logits.shape[1] * 20
    culprit = ("k", k) if sampled and k > iterations else ("iterations", iterations)
    check_size_budget(*culprit, work=float(iterations) * logits.shape[0] * per_prompt,
                      memory_bytes=8 * 8.0 * (k if sampled else 1) * logits.shape[0])
    answers = None
    if response_answer is not None:  # validated whenever given (used by the majority vote only)
        answer_array = np.asarray(response_answer)
        if answer_array.ndim == 1:
            answer_array = answer_array[None, :]
        answers = _check_answers("response_answer", answer_array, logits.shape)
    if objective == "majority_vote":
        if response_answer is None:
            raise ValueError("response_answer must be given for objective='majority_vote', got None")
    rng = as_generator("seed", seed)
    num_prompts = logits.shape[0]
    classes = [
        _check_bandit(
            "logits", logits[x], reward[x], objective, k, None if answers is None else answers[x]
        )[3]
        for x in range(num_prompts)
    ]

    def exact(probs, x, name, size):
        """(value, ∂/∂π) of objective ``name`` with ``size`` samples on prompt x."""
        return _value_and_response_gradient(
            probs[x], reward[x], name, size, classes[x] if name == objective else None
        )
    record = set(np.unique(np.linspace(0, iterations, checkpoints + 1).round().astype(int)).tolist())
    columns: dict[str, list] = {"iteration": [], "objective": []}
    for m in eval_ks:
        columns[f"pass_at_{m}"] = []
    clock = Stopwatch()

    def log(t, probs):
        columns["iteration"].append(t)
        columns["objective"].append(
            float(np.mean([exact(probs, x, objective, k)[0] for x in range(num_prompts)]))
        )
        for m in eval_ks:
            columns[f"pass_at_{m}"].append(
                float(np.mean([exact(probs, x, "pass_at_k", m)[0] for x in range(num_prompts)]))
            )

    with clock.running():
        probs = softmax(logits)
        log(0, probs)
        for t in range(1, iterations + 1):
            gradient = np.empty_like(logits)
            if sampled:
                samples = _sample_rows(rng, probs, k)
                eye = np.eye(logits.shape[1])
                for x in range(num_prompts):
                    group_answers = None if answers is None else answers[x][samples[x]]
                    advantages = leave_one_out_advantages(
                        reward[x][samples[x]], objective, group_answers, centered=centered
                    )
                    gradient[x] = advantages @ (eye[samples[x]] - probs[x])
            else:
                for x in range(num_prompts):
                    response_gradient = exact(probs, x, objective, k)[1]
                    gradient[x] = softmax_policy_gradient(probs[x], response_gradient)
            logits = logits + learning_rate * gradient
            probs = softmax(logits)
            if t in record:
                log(t, probs)
    return SolverResult(
        final=probs,
        metrics={key: np.asarray(value) for key, value in columns.items()},
        wall_time_s=clock.wall_s,
        compile_time_s=0.0,
        config={
            "solver": "train_k_sample",
            "init_logits": np.asarray(init_logits),
            "response_reward": reward,
            "objective": objective,
            "k": k,
            "response_answer": answers,
            "iterations": iterations,
            "learning_rate": learning_rate,
            "sampled": bool(sampled),
            "centered": bool(centered),
            "eval_ks": eval_ks,
            "checkpoints": checkpoints,
            "seed": seed if not isinstance(seed, np.random.Generator) else "generator",
        },
    )
