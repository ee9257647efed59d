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
    "nash_md": ".nlhf",
    "self_play_md": ".nlhf",
    "nash_mirror_prox": ".nlhf",
    "online_mirror_descent": ".nlhf",
    "fictitious_play": ".nlhf",
    "best_response_to_reference": ".nlhf",
    "nash_md_pg": ".nlhf",
    "rlhf_bradley_terry": ".nlhf",
    # --- MTPO: multi-turn preference games (issue 3) ---
    "preference_q_values": ".mtpo",
    "trajectory_kl": ".mtpo",
    "multiturn_exploitability": ".mtpo",
    "multiturn_regularized_nash": ".mtpo",
    "mtpo": ".mtpo",
    "mtpo_tau": ".mtpo",
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
    "q_lambda_contraction_bound": ".qlambda",
    # --- DCFP: model-based distributional RL (issue 5) ---
    "sample_empirical_model": ".model_based",
    "categorical_fixed_point": ".model_based",
    "categorical_dp": ".model_based",
    "quantile_dp": ".model_based",
    "monte_carlo_return_distribution": ".model_based",
    "sample_stochastic_cdf_bellman": ".model_based",
    # --- Language-model papers on bandits (issue 6) ---
    "gpo_loss": ".core.preference_losses",
    "bayes_link": ".core.preference_losses",
    "agro_gradient": ".agro",
    "leave_one_out_advantages": ".inference_objectives",
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
