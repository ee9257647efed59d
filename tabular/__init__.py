"""Tabular solvers (Numba), each verified in ``tests/`` against answers computed another way.

The public API is re-exported lazily (PEP 562): ``import fixpoint_rl.tabular.core`` stays free of
Numba, and ``from fixpoint_rl.tabular import nash_md`` imports only the module that defines it.
Every name listed in ``_EXPORTS`` is checked to resolve by ``tests/test_foundation.py``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> defining module (relative to this package). Grouped by paper / issue.
_EXPORTS: dict[str, str] = {
    # shared types and closed forms
    "SolverResult": ".core.result",
    "loglog_slope": ".core.stats",
    # --- NLHF: preference games (issue 2) ---
    "regularized_nash_equilibrium": ".nash",
    "nash_equilibrium": ".nash",
    "exploitability": ".nash",
    "fixed_point_residual": ".nash",
    "preference_against": ".nash",
    "preference_between": ".nash",
    "regularized_preference": ".nash",
    "nash_md": ".nlhf",
    "self_play_md": ".nlhf",
    "nash_mirror_prox": ".nlhf",
    "online_mirror_descent": ".nlhf",
    "fictitious_play": ".nlhf",
    "best_response_to_reference": ".nlhf",
    "nash_md_pg": ".nlhf",
    "rlhf_bradley_terry": ".nlhf",
    "nash_md_step": ".nlhf",
    "self_play_md_step": ".nlhf",
    "nash_mirror_prox_step": ".nlhf",
    "theorem_step_sizes": ".nlhf",
    # --- MTPO: multi-turn preference games (issue 3) ---
    "preference_q_values": ".multiturn",
    "trajectory_kl": ".multiturn",
    "multiturn_exploitability": ".multiturn",
    "multiturn_regularized_nash": ".multiturn",
    "mtpo": ".multiturn",
    "mtpo_tau": ".multiturn",
    "multiturn_preference": ".multiturn",
    "soft_best_response": ".multiturn",
    "mtpo_theorem_bound": ".multiturn",
    "final_state_distribution": ".multiturn",
    "reward_rl": ".multiturn",
    "multiturn_rlhf": ".multiturn",
    "single_turn_rlhf": ".multiturn",
    "single_turn_nash_md": ".multiturn",
    "learned_preference_game": ".multiturn",
    # --- Distributional core and Q(lambda) (issue 4) ---
    "CategoricalSupport": ".core.categorical",
    "categorical_projection": ".core.categorical",
    "cramer_distance": ".core.categorical",
    "wasserstein1": ".core.categorical",
    "to_cdf": ".core.categorical",
    "from_cdf": ".core.categorical",
    "distribution_mean": ".core.categorical",
    "pushforward": ".core.categorical",
    "distributional_operator": ".qlambda",
    "contraction_modulus": ".qlambda",
    "q_lambda_bound_from_mismatch": ".qlambda",
    "q_lambda_contraction_bound": ".qlambda",
    "projection_matrix": ".core.categorical",
    "iterate_distributional_operator": ".qlambda",
    "trace_coefficients": ".qlambda",
    "value_mode_rate": ".qlambda",
    "policy_q_values": ".qlambda",
    "categorical_evaluation_fixed_point": ".qlambda",
    "monte_carlo_returns": ".qlambda",
    "sampled_distributional_target": ".qlambda",
    "distributional_td_learning": ".qlambda",
    # --- DCFP: model-based distributional RL (issue 5) ---
    "sample_empirical_model": ".model_based",
    "categorical_fixed_point": ".model_based",
    "categorical_dp": ".model_based",
    "quantile_dp": ".model_based",
    "monte_carlo_return_distribution": ".model_based",
    "sample_stochastic_cdf_bellman": ".model_based",
    "dcfp_linear_system": ".model_based",
    "high_resolution_reference": ".model_based",
    "HighResolutionReference": ".model_based",
    "SparseMarkovRewardProcess": ".model_based",
    "sup_wasserstein1": ".model_based",
    # --- Language-model papers on bandits (issue 6) ---
    "gpo_loss": ".core.preference_losses",
    "bayes_link": ".core.preference_losses",
    "gpo_loss_derivative": ".core.preference_losses",
    "train_gpo": ".gpo",
    "solve_gpo": ".gpo",
    "offline_regularizer": ".gpo",
    "preference_pair_weights": ".gpo",
    "sample_preference_dataset": ".gpo",
    "online_gpo": ".online_offline",
    "offline_gpo": ".online_offline",
    "fit_proxy_preference": ".online_offline",
    "kl_win_rate_frontier": ".online_offline",
    "agro_gradient": ".agro",
    "agro_expected_gradient": ".agro",
    "agro_optimal_policy": ".agro",
    "train_agro": ".agro",
    "naive_pg_gradient": ".agro",
    "naive_pg_expected_gradient": ".agro",
    "pairwise_consistency_loss": ".agro",
    "regularized_reward": ".agro",
    "leave_one_out_advantages": ".inference_objectives",
    "k_sample_objective": ".inference_objectives",
    "k_sample_gradient": ".inference_objectives",
    "objective_value": ".inference_objectives",
    "objective_gradient": ".inference_objectives",
    "train_k_sample": ".inference_objectives",
    "jensen_bound": ".jepo",
    "multi_sample_bound": ".jepo",
    "log_evidence": ".jepo",
    "cot_posterior": ".jepo",
    "jepo_gradient": ".jepo",
    "jepo_expected_gradient": ".jepo",
    "train_cot": ".jepo",
    "rl_gradient": ".jepo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
