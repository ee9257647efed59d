"""The online–offline gap on softmax contextual bandits (Tang et al. 2024, arXiv 2405.08448).

Tang et al., "Understanding the performance gap between online and offline alignment" (2024;
arXiv 2405.08448), their controlled online-vs-offline protocol; closed forms derived in the tests. A Gao et
al.-style controlled loop, in miniature (X contexts, K responses, N triples, B batch, T steps):

  1. A *golden* preference P [X, K, K] (Bradley–Terry plus a non-transitive part) labels an offline
     dataset D of N triples drawn from a coverage μ (by default π_ref, the "SFT" policy).
  2. *Online path*: a Bradley–Terry *proxy* preference P̂ is fitted to D; online IPO samples
     on-policy pairs y, y' ∼ π_t(·|x), labels them with P̂ (Bernoulli draws) and takes an SGD step
     on the IPO (GPO squared) loss f(βρ) = (βρ − 1)².
  3. *Offline path*: SGD on the same loss over minibatches of the fixed D.
  4. Both are judged by the golden win rate against π_ref and KL(π‖π_ref), over a β sweep.

Ablations (paper §4 findings 2–3): offline IPO on *all* online samples, in their original order
(which replays online IPO exactly: the same minibatches in the same order give the same iterates)
or shuffled; and offline IPO on a dataset sampled from the final online policy (golden labels).

Exact facts this module relies on and the tests check: with exact expected gradients, online IPO
converges to the regularised Nash equilibrium π ∝ π_ref·exp(2P̂(y ≻ π)/β) (τ = β/2; derived, checked in the tests);
with two responses offline and online IPO have the same optimum σ(logit π_ref + (2p − 1)/β)
(derived); and the population offline-IPO optimum with π_ref coverage, π_ref·exp(2P(y ≻
π_ref)/β), is the Gibbs tilt that maximises the golden win rate against π_ref at its KL
(:func:`max_win_rate_at_kl`). So in the exact tabular setting the offline frontier is optimal, and
the paper's online advantage (an empirical finding with neural policies) can only come from finite
data, proxy error and optimisation — it is measured here, not assumed.

Valid range: β > 0, l2 > 0 (down to 1e-300: the Bradley–Terry fit then takes minimum-norm Newton
steps), steps·batch_size within the work budget of ``fixpoint_rl.envs.checks.check_size_budget``,
boolean flags True/False only. Outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..envs.checks import (
    as_float_array,
    as_generator,
    check_choice,
    check_distribution,
    check_bool,
    check_int,
    check_scalar,
    check_size_budget,
)
from .core.mirror import kl_divergence, softmax
from .core.preference_losses import check_kind, gpo_loss_derivative
from .core.result import SolverResult
from .gpo import (
    _check_pref,
    _check_ref,
    _check_triples,
    _context_probs,
    _hessian,
    _inverse_cdf,
    _loss_and_gradient,
    bradley_terry_preference,
    empirical_pair_weights,
    sample_preference_dataset,
)

__all__ = [
    "fit_proxy_preference",
    "kl_win_rate_frontier",
    "make_golden_preference",
    "max_win_rate_at_kl",
    "offline_gpo",
    "online_gpo",
    "regularized_nash_ipo",
]

ORDERS = ("shuffled", "original")


def make_golden_preference(num_contexts, num_responses, *, reward_scale=1.5, non_transitivity=0.3,
                           seed=0):
    """A golden preference P = (1 − λ)·σ(r_i − r_j) + λ·(½ + ½A_ij), A antisymmetric in [−1, 1].

    λ = ``non_transitivity`` = 0 gives a Bradley–Terry preference; λ > 0 adds a random cyclic part
    that no Bradley–Terry model represents. r ∼ N(0, reward_scale²) per (x, y).

    Returns:
      [X, K, K] preference (pref + prefᵀ = 1, diagonal ½).
    """
    num_contexts = check_int("num_contexts", num_contexts, low=1)
    num_responses = check_int("num_responses", num_responses, low=2)
    reward_scale = check_scalar("reward_scale", reward_scale, low=0.0)
    lam = check_scalar("non_transitivity", non_transitivity, low=0.0, high=1.0)
    rng = as_generator("seed", seed)
    reward = reward_scale * rng.standard_normal((num_contexts, num_responses))
    upper = np.triu(rng.uniform(-1.0, 1.0, (num_contexts, num_responses, num_responses)), k=1)
    cyclic = upper - np.swapaxes(upper, 1, 2)
    return (1.0 - lam) * bradley_terry_preference(reward) + lam * (0.5 + 0.5 * cyclic)


def fit_proxy_preference(context, winner, loser, num_contexts, num_responses, *, l2=1e-2):
    """Bradley–Terry proxy preference fitted to labelled triples by penalised maximum likelihood.

    r̂ = argmin_r (1/N) Σ_n log(1 + exp(−(r(x_n, y_w,n) − r(x_n, y_l,n)))) + (l2/2)‖r‖²
    (Newton's method; strictly convex for l2 > 0), and P̂(y_i ≻ y_j|x) = σ(r̂_i − r̂_j). Pairs never
    seen in the data get a preference through the shared rewards: the proxy generalises.

    Args:
      context, winner, loser: [N] int arrays; num_contexts: X; num_responses: K; l2: > 0 (any
        positive value: for l2 far below the data's curvature, e.g. 1e-300, the directions the
        data do not pin down — a context's common shift, responses never compared — are left at
        0 by a minimum-norm (pseudo-inverse) Newton step instead of a singular solve).

    Returns:
      [X, K, K] proxy preference.

    Valid range: num_contexts ≥ 1 and num_responses ≥ 2 (ints, within the memory budget); l2 ≥
    1e-300 (minimum-norm Newton steps; a subnormal l2 is refused); context/winner/loser indices
    in range.
    """
    num_contexts = check_int("num_contexts", num_contexts, low=1)
    num_responses = check_int("num_responses", num_responses, low=2)
    check_size_budget("num_responses" if num_responses ** 2 > num_contexts else "num_contexts",
                      num_responses if num_responses ** 2 > num_contexts else num_contexts,
                      memory_bytes=6 * 8.0 * num_contexts * num_responses ** 2)
    # documented lower end 1e-300: a subnormal l2 no longer bounds separable data's rewards
    l2 = check_scalar("l2", l2, low=1e-300)
    weights = empirical_pair_weights(context, winner, loser, num_contexts, num_responses)
    zero = np.zeros((num_contexts, num_responses))
    reward = zero.copy()
    eye = np.eye(num_responses)
    for _ in range(100):
        _, gradient = _loss_and_gradient(reward, zero, weights, 1.0, "logistic")
        gradient = gradient + l2 * reward
        if np.max(np.abs(gradient)) < 1e-12:
            break
        hessian = _hessian(reward, zero, weights, 1.0, "logistic") + l2 * eye
        # symmetric positive semi-definite up to rounding: the pseudo-inverse (eigenvalues below
        # 1e-12 of the largest dropped) is the exact inverse when l2 is not negligible and the
        # minimum-norm step when it is
        step = np.linalg.pinv(hessian, rcond=1e-12, hermitian=True) @ gradient[:, :, None]
        reward = reward - step[:, :, 0]
    return bradley_terry_preference(reward)


def regularized_nash_ipo(ref, pref, beta, *, iterations=20000, damping=0.05, tolerance=1e-13):
    """π ∝ π_ref·exp(2P(y ≻ π)/β): the fixed point of online IPO (regularised Nash, τ = β/2).

    Damped fixed-point iteration π ← (1 − d)π + d·softmax(log π_ref + 2Pπ/β), a
    plain NumPy loop; an oracle for :func:`online_gpo`, independent of its gradient code.

    Returns:
      [X, K] the fixed point (raises ValueError if it has not converged).
    """
    ref = _check_ref(ref)
    pref = _check_pref(pref, shape=(ref.shape[0], ref.shape[1], ref.shape[1]))
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    iterations = check_int("iterations", iterations, low=1)
    damping = check_scalar("damping", damping, low=0.0, high=1.0, low_inclusive=False)
    pi = ref.copy()
    log_ref = np.log(ref)
    for _ in range(iterations):
        target = softmax(log_ref + 2.0 * np.einsum("xij,xj->xi", pref, pi) / beta)
        if np.max(np.abs(target - pi)) < tolerance:
            return target
        pi = (1.0 - damping) * pi + damping * target
    raise ValueError(f"iterations={iterations} too few for the fixed point at beta={beta!r}")


def max_win_rate_at_kl(ref, pref, kl, *, context_probs=None, iterations=200):
    """The best golden win rate against π_ref at a KL budget, and the policy attaining it.

    max_π E_x Σ_y π(y|x)·P(y ≻ π_ref | x)  s.t.  E_x KL(π‖π_ref) ≤ kl  is solved by the Gibbs tilt
    π_τ ∝ π_ref·exp(P(y ≻ π_ref)/τ) with one τ for all contexts (Gibbs variational principle,
    Lagrangian in τ); τ is found by bisection on log τ (KL decreases in τ). This tilt is exactly the
    population optimum of offline IPO with pairs from π_ref×π_ref at β = 2τ (``ipo_optimum``), so
    with golden labels and full data the offline frontier is the optimal one: in the tabular
    setting no method, online IPO included, can beat it on (KL, win rate vs π_ref).

    Args:
      ref: [X, K]; pref: [X, K, K]; kl: ≥ 0 budget; context_probs: [X] ν; iterations: bisection steps.

    Returns:
      (win_rate: float, policy: [X, K]). For budgets beyond the greedy policy's KL, the greedy
      (τ → 0) limit is returned.
    """
    ref = _check_ref(ref)
    pref = _check_pref(pref, shape=(ref.shape[0], ref.shape[1], ref.shape[1]))
    kl = check_scalar("kl", kl, low=0.0)
    iterations = check_int("iterations", iterations, low=1)
    nu = _context_probs(context_probs, ref.shape[0])
    score = np.einsum("xij,xj->xi", pref, ref)
    log_ref = np.log(ref)

    def tilt(log_tau):
        return softmax(log_ref + score / np.exp(log_tau))

    low, high = np.log(1e-8), np.log(1e8)  # KL(π_low) ≥ kl ≥ KL(π_high) ≈ 0 after the checks
    if float(nu @ kl_divergence(tilt(low), ref)) <= kl:
        policy = tilt(low)
    else:
        for _ in range(iterations):
            mid = 0.5 * (low + high)
            if float(nu @ kl_divergence(tilt(mid), ref)) > kl:
                low = mid
            else:
                high = mid
        policy = tilt(high)  # the feasible side
    return float(nu @ np.sum(policy * score, axis=1)), policy


# --------------------------------------------------------------------------------------- SGD core
def _sgd_step(logits, log_ref, context, winner, loser, beta, kind, learning_rate, num_responses):
    """θ ← θ − η·(1/B)Σ_b ∇ f(β ρ_b) on one minibatch of triples (in place)."""
    margin = (logits[context, winner] - log_ref[context, winner]) - (
        logits[context, loser] - log_ref[context, loser]
    )
    slope = gpo_loss_derivative(margin, beta, kind) / len(context)
    size = logits.size
    gradient = np.bincount(context * num_responses + winner, weights=slope, minlength=size)
    gradient -= np.bincount(context * num_responses + loser, weights=slope, minlength=size)
    logits -= learning_rate * gradient.reshape(logits.shape)


def _schedule(learning_rate, step, steps):
    """η_t = η₀ / (1 + 4t/T): decays to η₀/5, damping the SGD noise of the final iterate."""
    return learning_rate / (1.0 + 4.0 * step / steps)


def _golden_metrics(logits, ref, nu, golden):
    policy = softmax(logits)
    row = {"kl_to_ref": float(nu @ kl_divergence(policy, ref))}
    if golden is not None:
        row["win_rate"] = float(nu @ np.einsum("xi,xij,xj->x", policy, golden, ref))
    return row


def _common(ref, beta, kind, steps, batch_size, learning_rate, num_checkpoints, golden_pref,
            context_probs):
    ref = _check_ref(ref)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    kind = check_kind(kind)
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    # steps · batch_size sampled pairs (each a few draws and a K-sized log-softmax), and
    # [batch_size] arrays per step
    culprit = ("batch_size", batch_size) if batch_size > steps else ("steps", steps)
    check_size_budget(*culprit, work=float(steps) * batch_size * (ref.shape[1] + 10),
                      memory_bytes=8 * 8.0 * batch_size)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    num_checkpoints = check_int("num_checkpoints", num_checkpoints, low=2)
    check_size_budget("num_checkpoints", num_checkpoints, memory_bytes=8.0 * 16 * num_checkpoints)
    shape3 = (ref.shape[0], ref.shape[1], ref.shape[1])
    golden = None if golden_pref is None else _check_pref(golden_pref, shape=shape3, name="golden_pref")
    nu = _context_probs(context_probs, ref.shape[0])
    marks = np.unique(np.linspace(0, steps, num_checkpoints).astype(int))
    return ref, beta, kind, steps, batch_size, learning_rate, golden, nu, marks


def online_gpo(
    ref,
    label_pref,
    beta,
    *,
    kind="squared",
    steps=1000,
    batch_size=32,
    learning_rate=0.5,
    seed=0,
    exact=False,
    golden_pref=None,
    context_probs=None,
    num_checkpoints=20,
):
    """Online IPO (or any GPO loss): on-policy pairs labelled by a preference model, SGD steps.

    Per step t: x_b ∼ ν; y_b, y'_b ∼ π_t(·|x_b); y_b wins with probability P̂(y_b ≻ y'_b|x_b);
    θ ← θ − η_t·(1/B)Σ_b ∇_θ f(β ρ_b), with η_t = η₀/(1 + 4t/T). With ``exact=True`` the minibatch
    is replaced by its expectation (population loss with W = 2ν·π_t·π_tᵀ·P̂, π_t held fixed) and
    the step is the constant η₀; the stationary point for ``squared`` is π ∝ π_ref·exp(2P̂(y ≻ π)/β).

    Args:
      ref: [X, K] π_ref (also the starting policy); label_pref: [X, K, K] the labeller P̂ (a proxy);
      beta: > 0; kind: GPO loss (IPO = "squared"); steps: T; batch_size: B; learning_rate: η₀;
      seed: int or Generator; exact: expected gradients instead of samples;
      golden_pref: [X, K, K] for the ``win_rate`` metric (golden win rate against π_ref);
      context_probs: [X] ν; num_checkpoints: C.

    Returns:
      SolverResult: final [X, K]; metrics iteration, kl_to_ref, win_rate (if golden_pref);
      extras: logits, and (sampled runs) ``stream`` = dict(context, winner, loser) of the T·B
      labelled triples in the order they were used.

    Valid range: beta in [1e-4, 1e4]; steps ≥ 1 and batch_size ≥ 1 (ints) with steps·batch_size
    within the work budget; learning_rate in (0, 1e3] with learning_rate·beta² ≤ 4 (a diverging run
    raises ValueError naming learning_rate); num_checkpoints ≥ 2.
    """
    ref, beta, kind, steps, batch_size, learning_rate, golden, nu, marks = _common(
        ref, beta, kind, steps, batch_size, learning_rate, num_checkpoints, golden_pref,
        context_probs)
    label_pref = _check_pref(
        label_pref, shape=(ref.shape[0], ref.shape[1], ref.shape[1]), name="label_pref"
    )
    if not isinstance(exact, bool):
        raise ValueError(f"exact must be a bool, got {exact!r}")
    rng = as_generator("seed", seed)
    num_contexts, num_responses = ref.shape
    log_ref = np.log(ref)
    logits = log_ref.copy()
    streams = {"context": [], "winner": [], "loser": []}
    rows = []
    context_cdf = np.cumsum(nu)
    context_cdf[-1] = 1.0
    start = time.perf_counter()
    for t in range(steps + 1):
        if len(rows) < len(marks) and t == marks[len(rows)]:
            rows.append({"iteration": t, **_golden_metrics(logits, ref, nu, golden)})
        if t == steps:
            break
        rate = learning_rate if exact else _schedule(learning_rate, t, steps)
        if exact:
            policy = softmax(logits)
            weights = 2.0 * nu[:, None, None] * policy[:, :, None] * policy[:, None, :] * label_pref
            logits -= rate * _loss_and_gradient(logits, log_ref, weights, beta, kind)[1]
            continue
        draws = rng.random((4, batch_size))
        context = np.minimum(np.searchsorted(context_cdf, draws[0], side="right"), num_contexts - 1)
        cdf = np.cumsum(softmax(logits), axis=1)[context]
        cdf[:, -1] = 1.0
        first = _inverse_cdf(cdf, draws[1])
        second = _inverse_cdf(cdf, draws[2])
        first_wins = draws[3] < label_pref[context, first, second]
        winner = np.where(first_wins, first, second)
        loser = np.where(first_wins, second, first)
        _sgd_step(logits, log_ref, context, winner, loser, beta, kind, rate, num_responses)
        streams["context"].append(context)
        streams["winner"].append(winner)
        streams["loser"].append(loser)
    wall = time.perf_counter() - start
    extras = {"logits": logits}
    if not exact:
        extras["stream"] = {key: np.concatenate(value).astype(np.int64) for key, value in streams.items()}
    return SolverResult(
        final=softmax(logits),
        metrics={key: np.array([row[key] for row in rows]) for key in rows[0]},
        wall_time_s=wall,
        compile_time_s=0.0,
        config={"solver": "online_gpo", "beta": beta, "kind": kind, "steps": steps,
                "batch_size": batch_size, "learning_rate": learning_rate, "exact": exact,
                "seed": seed if not isinstance(seed, np.random.Generator) else "generator"},
        extras=extras,
    )


def offline_gpo(
    ref,
    context,
    winner,
    loser,
    beta,
    *,
    kind="squared",
    steps=1000,
    batch_size=32,
    learning_rate=0.5,
    order="shuffled",
    seed=0,
    golden_pref=None,
    context_probs=None,
    num_checkpoints=20,
):
    """Offline IPO (or any GPO loss): SGD over minibatches of a fixed dataset of triples.

    ``order="shuffled"``: each epoch visits the N triples in a fresh random permutation.
    ``order="original"``: consecutive minibatches in the stored order, wrapping around; on the
    ``stream`` of :func:`online_gpo` with the same T, B and η₀ this replays online IPO exactly.
    Same schedule η_t = η₀/(1 + 4t/T) as :func:`online_gpo`.

    Args:
      ref: [X, K]; context, winner, loser: [N] int arrays; beta: > 0; other arguments as
      :func:`online_gpo`; order: "shuffled" or "original".

    Returns:
      SolverResult: final [X, K]; metrics iteration, kl_to_ref, win_rate (if golden_pref);
      extras: logits.

    Valid range: beta in [1e-4, 1e4]; steps ≥ 1 and batch_size ≥ 1 (ints) with steps·batch_size
    within the work budget; learning_rate in (0, 1e3] with learning_rate·beta² ≤ 4 (a diverging run
    raises ValueError naming learning_rate); num_checkpoints ≥ 2.
    """
    ref, beta, kind, steps, batch_size, learning_rate, golden, nu, marks = _common(
        ref, beta, kind, steps, batch_size, learning_rate, num_checkpoints, golden_pref,
        context_probs)
    order = check_choice("order", order, ORDERS)
    num_contexts, num_responses = ref.shape
    context, winner, loser = _check_triples(context, winner, loser, num_contexts, num_responses)
    rng = as_generator("seed", seed)
    num_samples = len(context)
    log_ref = np.log(ref)
    logits = log_ref.copy()
    rows = []
    permutation = np.arange(num_samples) if order == "original" else rng.permutation(num_samples)
    cursor = 0
    start = time.perf_counter()
    for t in range(steps + 1):
        if len(rows) < len(marks) and t == marks[len(rows)]:
            rows.append({"iteration": t, **_golden_metrics(logits, ref, nu, golden)})
        if t == steps:
            break
        picked = []
        needed = batch_size
        while needed > 0:
            take = min(needed, num_samples - cursor)
            picked.append(permutation[cursor:cursor + take])
            cursor += take
            needed -= take
            if cursor == num_samples:
                cursor = 0
                if order == "shuffled":
                    permutation = rng.permutation(num_samples)
        batch = np.concatenate(picked)
        _sgd_step(logits, log_ref, context[batch], winner[batch], loser[batch], beta, kind,
                  _schedule(learning_rate, t, steps), num_responses)
    wall = time.perf_counter() - start
    return SolverResult(
        final=softmax(logits),
        metrics={key: np.array([row[key] for row in rows]) for key in rows[0]},
        wall_time_s=wall,
        compile_time_s=0.0,
        config={"solver": "offline_gpo", "beta": beta, "kind": kind, "steps": steps,
                "batch_size": batch_size, "learning_rate": learning_rate, "order": order,
                "num_samples": num_samples,
                "seed": seed if not isinstance(seed, np.random.Generator) else "generator"},
        extras={"logits": logits},
    )


def kl_win_rate_frontier(
    ref,
    golden_pref,
    betas,
    *,
    num_samples=2000,
    coverage=None,
    steps=600,
    batch_size=32,
    learning_rate=0.3,
    l2=1e-2,
    ablations=True,
    seed=0,
):
    """KL–win-rate points of online vs offline IPO over a β sweep, with the paper's ablations.

    One offline dataset D (N triples from ``coverage``, default π_ref, golden labels) and one
    proxy P̂ = :func:`fit_proxy_preference` (D) are shared by all β. Per β (learning rate η₀/β², which
    matches the curvature 2β² of the IPO loss in ρ):

    * ``online``: :func:`online_gpo` labelled by P̂;
    * ``offline``: :func:`offline_gpo` on D (shuffled epochs);
    * ``offline_online_ordered`` / ``offline_online_shuffled``: offline on the online stream, in its
      original order / shuffled (``ablations=True``);
    * ``offline_final_policy``: offline on N triples sampled from the final online policy with
      golden labels (``ablations=True``).

    Args:
      ref: [X, K]; golden_pref: [X, K, K]; betas: [B'] positive; num_samples: N; coverage: [X, K]
      (default ref); steps, batch_size, learning_rate: SGD settings; l2: proxy penalty;
      ablations: include the three ablations; seed: base seed.

    Returns:
      DataFrame with columns method, beta, kl_to_ref, win_rate (golden, against π_ref).

    Valid range: num_samples, steps and batch_size ≥ 1 (ints, within the work budget); learning_rate
    in (0, 1e3]; l2 > 0 down to 1e-300; betas > 0.
    """
    ref = _check_ref(ref)
    golden = _check_pref(golden_pref, shape=(ref.shape[0], ref.shape[1], ref.shape[1]), name="golden_pref")
    betas = as_float_array("betas", betas, ndim=1)
    if betas.size == 0 or np.any(betas <= 0):
        raise ValueError(f"betas must be a non-empty array of positive numbers, got {betas!r}")
    coverage = ref if coverage is None else check_distribution("coverage", coverage, shape=ref.shape)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    ablations = check_bool("ablations", ablations)
    rng = as_generator("seed", seed)
    num_contexts, num_responses = ref.shape
    data = sample_preference_dataset(golden, coverage, num_samples, rng)
    proxy = fit_proxy_preference(*data, num_contexts, num_responses, l2=l2)
    settings = {"steps": steps, "batch_size": batch_size, "golden_pref": golden}
    rows = []
    for beta in betas:
        beta = float(beta)
        rate = learning_rate / beta**2
        seeds = rng.integers(0, 2**32, size=4)
        online = online_gpo(ref, proxy, beta, learning_rate=rate, seed=int(seeds[0]), **settings)
        runs = {
            "online": online,
            "offline": offline_gpo(ref, *data, beta, learning_rate=rate, seed=int(seeds[1]), **settings),
        }
        if ablations:
            stream = online.extras["stream"]
            triples = (stream["context"], stream["winner"], stream["loser"])
            runs["offline_online_ordered"] = offline_gpo(
                ref, *triples, beta, learning_rate=rate, order="original", **settings)
            runs["offline_online_shuffled"] = offline_gpo(
                ref, *triples, beta, learning_rate=rate, seed=int(seeds[2]), **settings)
            final_data = sample_preference_dataset(golden, online.final, num_samples, int(seeds[3]))
            runs["offline_final_policy"] = offline_gpo(
                ref, *final_data, beta, learning_rate=rate, seed=int(seeds[3]), **settings)
        for method, result in runs.items():
            rows.append({"method": method, "beta": beta, "kl_to_ref": result.last("kl_to_ref"),
                         "win_rate": result.last("win_rate")})
    return pd.DataFrame(rows)
