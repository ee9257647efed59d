"""Distributional Q(λ) vs Retrace: contraction moduli, the β₂ bound and iterations to 1e-8.

Over a grid of λ and behaviour mismatch ε = max_x ‖π(·|x) − μ(·|x)‖₁ on random Garnet MDPs
(γ = 0.9, per-step projection, contraction analysis of arXiv 2402.05766), each row reports for one operator:
  * ``lipschitz``: the empirical sup-Cramér Lipschitz ratio (``contraction_modulus``),
  * ``rate``: the asymptotic rate (power iteration on zero-mass perturbations),
  * ``bound``: β₂ = √γ κ/(1 − λ√γ), κ = max_x Σ_a |π − λμ| (Q(λ) rows),
  * ``inside_region``: λε < (1 − √γ)/√γ (β₂ < 1 is then guaranteed; a description of the point,
    not a verdict: outside the region the bound simply promises no contraction),
  * ``iterations``: iterations of η ← Π_C 𝒜 η from the uniform start to a sup-ℓ2 change ≤ 1e-8,
  * ``mean_error``: sup |mean(η_final) − Q^π|.
Claims checked (``holds``): Q(λ) rows — lipschitz ≤ β₂, and the iteration converges with mean
error ≤ 1e-6 whenever the point is inside the guaranteed region; Retrace rows — the iteration
converges to mean Q^π (Retrace is always a contraction). A final row checks the value-mode rate
γ(1 − λ)/(1 − λγ) of Q(λ).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fixpoint_rl.envs.mdp import garnet, greedy_policy, random_policy
from fixpoint_rl.tabular import CategoricalSupport
from fixpoint_rl.tabular.qlambda import (
    contraction_modulus,
    iterate_distributional_operator,
    q_lambda_contraction_bound,
    value_mode_rate,
)

from ._runner import BenchConfig

GAMMA = 0.9
DISPLAY_COLUMNS = ("lam", "eps", "lipschitz", "bound", "rate", "inside_region", "iterations",
                   "mean_error", "converged")
CLAIM_Q_LAMBDA = ("lipschitz ≤ β₂; inside the region: converges with |mean − Q^π| ≤ 1e-6")
CLAIM_RETRACE = "converges with |mean − Q^π| ≤ 1e-6"
CLAIM_VALUE_MODE = "rate = γ(1 − λ)/(1 − λγ) to 1e-8 (value mode)"


def run(config: BenchConfig) -> pd.DataFrame:
    lams = config.pick([0.0, 0.9], [0.0, 0.25, 0.5, 0.75, 0.9, 1.0], [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
    mixes = config.pick([0.3], [0.02, 0.1, 0.5], [0.02, 0.05, 0.1, 0.3, 0.5, 0.8])
    n_mdps = config.pick(1, 2, 3)
    S, A, M = config.pick((4, 2, 21), (5, 3, 31), (10, 3, 51))
    probes = config.pick(1, 2, 4)
    support = CategoricalSupport(0.0, 1.0 / (1.0 - GAMMA), M)
    threshold = (1 - np.sqrt(GAMMA)) / np.sqrt(GAMMA)
    rows = []
    cases = [(k, w, lam) for k in range(n_mdps) for w in mixes for lam in lams]
    for k, mix, lam in config.track(cases, "qlambda grid"):
        seed = config.seed + 1000 * k
        mdp = garnet(S, A, 2, seed, gamma=GAMMA)
        rng = np.random.default_rng(seed)
        pi = greedy_policy(rng.random((S, A)))
        mu = (1 - mix) * pi + mix * random_policy(mdp, rng)
        eps = float(np.max(np.abs(pi - mu).sum(1)))
        bound = q_lambda_contraction_bound(mdp, pi, mu, lam)  # β₂, κ = max_x Σ_a |π − λμ|
        inside = bool(lam * eps < threshold)
        for trace in ("q_lambda", "retrace"):
            common = dict(support=support, trace=trace)
            lipschitz = contraction_modulus(
                mdp, pi, mu, lam, n_probes=probes, iterations=8, seed=seed, **common
            )
            rate = contraction_modulus(
                mdp, pi, mu, lam, mode="rate", n_probes=probes, iterations=30, seed=seed, **common
            )
            result = iterate_distributional_operator(
                mdp, pi, mu, lam, tol=1e-8, max_iterations=2000, **common
            )
            converged = bool(result.extras["converged"])
            mean_error = result.last("mean_error")
            if trace == "q_lambda":
                holds = bool(lipschitz <= bound + 1e-12) and (
                    not inside or (converged and mean_error <= 1e-6)
                )
            else:
                holds = converged and mean_error <= 1e-6
            claim = CLAIM_Q_LAMBDA if trace == "q_lambda" else CLAIM_RETRACE
            rows.append(
                {
                    "algorithm": trace,
                    "problem": f"garnet S={S} A={A} seed={seed}",
                    "claim": claim,
                    "holds": holds,
                    "lam": lam,
                    "eps": eps,
                    "lipschitz": lipschitz,
                    "rate": rate,
                    "bound": bound if trace == "q_lambda" else np.nan,
                    "inside_region": inside,
                    "iterations": int(result.iterations[-1]),
                    "converged": converged,
                    "mean_error": mean_error,
                }
            )
    # value mode of Q(λ): rate γ(1 − λ)/(1 − λγ) for every μ
    mdp = garnet(S, A, 2, config.seed, gamma=GAMMA)
    rng = np.random.default_rng(config.seed)
    pi = greedy_policy(rng.random((S, A)))
    mu = random_policy(mdp, rng)
    for lam in lams:
        measured = value_mode_rate(mdp, pi, mu, lam, support=support)
        predicted = GAMMA * (1 - lam) / (1 - lam * GAMMA)
        rows.append(
            {
                "algorithm": "q_lambda value mode",
                "problem": f"garnet S={S} A={A} seed={config.seed}",
                "claim": CLAIM_VALUE_MODE,
                "holds": bool(abs(measured - predicted) <= 1e-8),
                "lam": lam,
                "rate": measured,
                "bound": predicted,
            }
        )
    return pd.DataFrame(rows)
