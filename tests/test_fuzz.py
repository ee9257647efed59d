"""Fuzz property test over every public name of ``fixpoint_rl.tabular`` and ``fixpoint_rl.envs``.

Cases come from ``tests/fuzz_registry.py`` (tiny valid calls, valid-but-extreme arguments, generic
and function-specific invalid arguments). Every outcome is classified:

* ``finite``: a valid case returned, and every float in the result (arrays, scalars, the
  ``final``/``metrics``/``extras`` of a ``SolverResult``, fields of returned specs) is finite;
* ``named_error``: an invalid case raised ``ValueError`` whose message names the argument;
* bad outcomes: ``nonfinite`` (silent NaN/inf for valid input), ``rejected_valid`` (a valid case
  raised), ``accepted_invalid`` (an invalid case returned), ``unnamed_error`` (a ``ValueError``
  that does not name the argument), ``foreign`` (any other exception: LinAlgError, TypeError,
  IndexError, UFuncTypeError, ...), ``hang`` (a call over the per-call time limit).

Random numbers (``test_random_numbers``, one per public name): numeric arguments drawn (a) anywhere
on the line, where a finite result or a ``ValueError`` naming a drawn argument are the only
acceptable outcomes, and (b) inside the ranges the registry declares (``RANGES``), where the result
must be finite and a ``ValueError`` is acceptable only for a violated, named joint constraint
(``joint_error``). ``test_every_numeric_argument_has_a_documented_range`` makes a new public
function without ranges fail.

The property: no bad outcome. The default profile draws a modest number of cases per function
(the whole file stays under a minute of CPU); ``HYPOTHESIS_PROFILE=thorough`` (or
``FUZZ_EXAMPLES``/``FUZZ_RANDOM_EXAMPLES``) draws many more, and ``python tests/test_fuzz.py``
runs one reproducible enumeration: every listed case plus a seed-0 random-number sample per
function (``--random N``, ``--workers W``, names to restrict it), printing the counts by outcome
and by function and exiting 1 on any bad outcome. Regression tests below pin each failure the
random numbers found, against an answer computed another way.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixpoint_rl.envs as envs  # noqa: E402
import fixpoint_rl.tabular as tabular  # noqa: E402
from fuzz_registry import (  # noqa: E402
    REGISTRY,
    cases,
    function_of,
    numeric_args,
    random_cases,
    random_number_case,
    resolve,
)

# A call on the tiny registry problems takes milliseconds (after Numba's cached compile); anything
# over this limit is a hang (e.g. an absurd size that should have been refused up front).
CALL_LIMIT_S = float(os.environ.get("FUZZ_CALL_LIMIT_S", "20"))
BAD = ("nonfinite", "rejected_valid", "accepted_invalid", "unnamed_error", "foreign", "hang")
# Random-number cases per public name and example: one drawn anywhere on the line and one inside
# the declared ranges. Default: 8 examples (16 calls) per name, ≈ 10 s for the whole
# random-number test on an idle machine (it must stay < 60 s);
# HYPOTHESIS_PROFILE=thorough, FUZZ_RANDOM_EXAMPLES (or FUZZ_EXAMPLES, which sets both) for more.
RANDOM_EXAMPLES = int(
    os.environ.get(
        "FUZZ_RANDOM_EXAMPLES",
        os.environ.get("FUZZ_EXAMPLES", "100" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "8"),
    )
)
# Cases drawn per public name: modest by default (~130 names; the whole file stays < 60 s),
# many more under HYPOTHESIS_PROFILE=thorough; FUZZ_EXAMPLES overrides both.
EXAMPLES_PER_NAME = int(
    os.environ.get(
        "FUZZ_EXAMPLES", "200" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "6"
    )
)
PUBLIC = sorted({*tabular.__all__, *envs.__all__})


class _CallTimeout(BaseException):
    """Raised by the SIGALRM handler (BaseException so library code cannot swallow it)."""


def _on_alarm(signum, frame):
    raise _CallTimeout


def nonfinite_paths(value, path="result", depth=0):
    """Paths of non-finite floats inside a result (arrays, scalars, containers, dataclasses)."""
    if depth > 6:
        return []
    if isinstance(value, (bool, np.bool_, int, np.integer, str, bytes)) or value is None:
        return []
    if isinstance(value, (float, np.floating)):
        return [] if math.isfinite(float(value)) else [path]
    if isinstance(value, (complex, np.complexfloating)):
        return [f"{path} (complex)"]
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            return [f"{path} (complex array)"]
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            return [path]
        if value.dtype == object:
            return [p for i, v in enumerate(value.flat) for p in nonfinite_paths(v, f"{path}[{i}]", depth + 1)]
        return []
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in nonfinite_paths(v, f"{path}[{k!r}]", depth + 1)]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in nonfinite_paths(v, f"{path}[{i}]", depth + 1)]
    if dataclasses.is_dataclass(value):
        return [
            p
            for f in dataclasses.fields(value)
            for p in nonfinite_paths(getattr(value, f.name), f"{path}.{f.name}", depth + 1)
        ]
    if hasattr(value, "toarray") and hasattr(value, "data"):  # scipy sparse
        return nonfinite_paths(np.asarray(value.data), f"{path}.data", depth + 1)
    return []


def _names(message, args):
    """Whether an error message names one of ``args`` (as a word: ``n`` is not found in "and")."""
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(a)}(?![A-Za-z0-9_])", message) for a in args)


def _effective_kwargs(fn, kwargs):
    """The call's keyword arguments with the signature's defaults filled in (for joint checks)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    out = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    out.update(kwargs)
    return out


def run_case(name, entry, kind, arg, overrides):
    """Call one case; returns (outcome, detail).

    ``kind``: "valid" (must be finite), "invalid" (must raise a ValueError naming ``arg``), "any"
    (either), and for random numbers "line" (``arg`` is the tuple of drawn arguments: a finite
    result or a ValueError naming one of them) or "inside" (drawn inside the declared ranges: a
    finite result; a ValueError only when a declared joint constraint is violated and named).
    """
    base = entry.base()
    kwargs = dict(base)
    for key, value in overrides.items():
        kwargs[key] = resolve(value, base)
    fn = function_of(name, entry)
    if kind in ("line", "inside"):
        return _classify_random(entry, kind, arg, _effective_kwargs(fn, kwargs), *_call(fn, kwargs))
    result, error, hang = _call(fn, kwargs)
    if hang:
        return "hang", hang
    if error is not None:
        if _is_foreign(error):
            return "foreign", f"{type(error).__name__}: {str(error)[:160]}"
        if kind == "valid":
            return "rejected_valid", str(error)[:200]
        # "invalid" and "any": the ValueError must name the argument
        if arg not in str(error):
            return "unnamed_error", str(error)[:200]
        return "named_error", ""
    if kind == "invalid":
        return "accepted_invalid", ""
    # "valid" and "any" (a random value that may lie on either side of the range): a result
    # must be finite
    bad = nonfinite_paths(result)
    if bad:
        return "nonfinite", ", ".join(bad[:4])
    return "finite", ""


def _is_foreign(error: BaseException) -> bool:
    """Anything but ValueError or one of the library's own ValueError subclasses."""
    return type(error) is not ValueError and not (
        isinstance(error, ValueError) and type(error).__module__.startswith("fixpoint_rl")
    )


def _call(fn, kwargs):
    """(result, exception, hang message) of one call under the SIGALRM limit; a call over the
    limit is retried once, because the first call of a new Numba specialisation compiles it
    (seconds, more under load; the compile completes and is cached even when interrupted), so
    only a call that is slow twice counts as a hang."""
    result, error, hang = _call_once(fn, kwargs)
    if hang:
        result, error, hang = _call_once(fn, kwargs)
    return result, error, hang


def _call_once(fn, kwargs):
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT_S)
    start = time.perf_counter()
    result = error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(**kwargs)
    except _CallTimeout:
        return None, None, f"over {CALL_LIMIT_S} s"
    except Exception as exc:  # noqa: BLE001 - classified by the caller
        error = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if time.perf_counter() - start > CALL_LIMIT_S:
        return None, None, f"took {time.perf_counter() - start:.1f} s"
    return result, error, None


def _classify_random(entry, kind, args, kwargs, result, error, hang):
    if hang:
        return "hang", hang
    if error is not None:
        if _is_foreign(error):
            return "foreign", f"{type(error).__name__}: {str(error)[:160]}"
        message = str(error)
        if kind == "line":
            return ("named_error", "") if _names(message, args) else ("unnamed_error", message[:200])
        for joint in entry.joint:
            try:
                violated = not joint.holds(kwargs)
            except Exception:  # noqa: BLE001 - a predicate over missing/None arguments
                violated = False
            if violated and _names(message, joint.args):
                return "joint_error", ""
        return "rejected_valid", message[:200]
    bad = nonfinite_paths(result)
    if bad:
        return "nonfinite", ", ".join(bad[:4])
    return "finite", ""


def describe_case(overrides):
    return {k: (repr(v)[:60]) for k, v in overrides.items()}


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_every_public_name_has_a_registry_entry():
    missing = [n for n in PUBLIC if n not in REGISTRY]
    stale = [n for n in REGISTRY if n not in PUBLIC]
    assert not missing, f"public names without a fuzz registry entry (tests/fuzz_registry.py): {missing}"
    assert not stale, f"registry entries for names no longer exported: {stale}"


def test_registry_arguments_exist_in_signatures():
    """Every argument the registry fuzzes is a real parameter (so a renamed argument is noticed)."""
    import inspect

    wrong = {}
    for name in PUBLIC:
        entry = REGISTRY[name]
        if entry.call is not None:
            continue
        params = inspect.signature(function_of(name, entry)).parameters
        unknown = [a for a in [*entry.kinds, *entry.invalid] if a not in params]
        if unknown:
            wrong[name] = unknown
    assert not wrong, wrong


def test_every_base_case_is_finite_and_fast():
    """The tiny base call of every entry succeeds with a finite result (the oracle for 'valid')."""
    bad = {}
    for name in PUBLIC:
        outcome, detail = run_case(name, REGISTRY[name], "valid", None, {})
        if outcome != "finite":
            bad[name] = (outcome, detail)
    assert not bad, bad


@pytest.mark.parametrize("name", PUBLIC)
@settings(max_examples=EXAMPLES_PER_NAME)
@given(data=st.data())
def test_fuzz_public_function(name, data):
    entry = REGISTRY[name]
    all_cases = cases(name, entry)
    kind, arg, overrides = data.draw(st.sampled_from(all_cases), label="case")
    outcome, detail = run_case(name, entry, kind, arg, overrides)
    assert outcome not in BAD, (
        f"{name}: {kind} case {describe_case(overrides)} -> {outcome}: {detail}"
    )


def test_every_numeric_argument_has_a_documented_range():
    """Every numeric argument (kinds real/int/size and opt_ variants) of every entry has a declared
    range; the base call's values lie inside it; probes lie inside it; joint constraints name real
    arguments."""
    problems = {}
    for name in PUBLIC:
        entry = REGISTRY[name]
        numeric = set(numeric_args(entry))
        missing = sorted(numeric - set(entry.ranges))
        extra = sorted(set(entry.ranges) - numeric)
        if missing or extra:
            problems[name] = f"no range for {missing}, range for non-numeric {extra}"
            continue
        base = entry.base()
        for arg, r in entry.ranges.items():
            kind = entry.kinds[arg]
            lo, hi = r.probe_bounds()
            inside = all(r.contains(v) or (v == end and is_open)
                         for v, end, is_open in ((lo, r.low, r.low_open), (hi, r.high, r.high_open)))
            if lo > hi or not inside:
                problems[name] = f"{arg}: probe {lo, hi} not inside {r}"
            if r.integer != (kind.removeprefix("opt_") in ("int", "size")):
                problems[name] = f"{arg}: integer flag of {r} disagrees with kind {kind}"
            value = base.get(arg)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not r.contains(value):
                problems[name] = f"{arg}: base value {value!r} outside its declared range {r}"
        for joint in entry.joint:
            if not set(joint.args) <= set(entry.kinds):
                problems[name] = f"joint constraint {joint.text!r} names unknown arguments"
    assert not problems, problems


@pytest.mark.parametrize("name", PUBLIC)
@settings(max_examples=RANDOM_EXAMPLES)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_numbers(name, seed):
    """Random numbers for the numeric arguments: (a) anywhere on the line (sign × 10^U(−15, 15), 0,
    ±tiny, integers from −10 to a cap and the int64 edges): a finite result or a ValueError naming
    a drawn argument; (b) inside the declared ranges (probes capped so every call is
    milliseconds): a finite result, a ValueError only for a violated, named joint constraint."""
    entry = REGISTRY[name]
    if not numeric_args(entry):
        assert not entry.ranges
        return
    rng = np.random.default_rng(seed)
    for mode in ("line", "inside"):
        args, overrides = random_number_case(entry, mode, rng)
        outcome, detail = run_case(name, entry, mode, args, overrides)
        assert outcome not in BAD, f"{name}: {mode} {describe_case(overrides)} -> {outcome}: {detail}"


# --------------------------------------------------------------------------------------------
# regressions: each input the random-number property found, with the expected outcome checked
# against an answer computed another way (a limit, a closed form, a direct formula)
# --------------------------------------------------------------------------------------------


def test_exploitability_at_subnormal_tau_is_the_unregularised_limit():
    # τ·log Σ μ exp(v/τ) → max v as τ → 0 (μ full support) and τ·KL → 0, so at τ = 5e-324 the
    # regularised exploitability must equal the τ = 0 closed form max_y v(y) − ½; both are sums
    # of a few O(1) terms, so 1e-15 is rounding. (It overflowed to NaN before the max-shift.)
    game = envs.random_game(6, seed=3)
    rng = np.random.default_rng(0)
    for pi in (rng.dirichlet(np.ones(6)), np.eye(6)[2]):
        for tau in (5e-324, 1e-300):
            assert tabular.exploitability(game, pi, tau) == pytest.approx(
                tabular.exploitability(game, pi, 0.0), abs=1e-15)


def test_exploitability_at_huge_tau_is_the_second_order_gain():
    # At π = μ the best response is ∝ μ exp(v/τ) ≈ μ(1 + (v − μ·v)/τ), whose gain over μ is
    # Var_μ(v)/(2τ) + O(1/τ²) (v = P μ). The expansion's relative error is O(max|v|/τ) ≤ 1e-4 for
    # τ ≥ 1e4; 1e-15 absolute covers float64 rounding of the O(1) terms. (The former τ·log Σ μ
    # exp(v/τ) returned τ times a rounding error: 0.17 at τ = 1e15.)
    game = envs.random_game(6, seed=1)
    v = game.pref @ game.ref
    variance = game.ref @ (v - game.ref @ v) ** 2
    for tau in (1e4, 1e8, 1e12, 1e15, 1e300):
        expected = variance / (2 * tau)
        assert abs(tabular.exploitability(game, game.ref, tau) - expected) <= 1e-3 * expected + 1e-15


def test_fixed_point_residual_at_subnormal_tau_is_against_the_best_response():
    # softmax(log μ + P π/τ) → the indicator of argmax_y P(y ≻ π) as τ → 0 (a unique argmax here)
    game = envs.random_game(5, seed=1)
    pi = np.random.default_rng(1).dirichlet(np.ones(5))
    best = np.eye(5)[np.argmax(game.pref @ pi)]
    assert tabular.fixed_point_residual(game, pi, 5e-324) == pytest.approx(np.max(np.abs(pi - best)), abs=1e-15)


def test_regularized_nash_equilibrium_below_its_range_refuses_naming_tau():
    # dice: the probability-space residual of float64 rounding is ≈ 1.2e-17/τ, above the 1e-9
    # acceptance threshold for τ ≤ 1e-8 (was a RuntimeError after minutes of continuation)
    for tau in (1e-9, 1e-200, 5e-324):
        with pytest.raises(ValueError, match=r"tau"):
            tabular.regularized_nash_equilibrium(envs.dice(), tau)
    with pytest.raises(ValueError, match=r"tau"):
        tabular.best_response_to_reference(envs.dice(), 2.5e-13)
    # rock-paper-scissors is symmetric: π*_τ is uniform for every τ, so tiny τ still resolves
    np.testing.assert_allclose(tabular.regularized_nash_equilibrium(envs.rock_paper_scissors(), 1e-200),
                               np.full(3, 1 / 3), atol=1e-15)
    # a Newton budget that runs out names max_iter (was a RuntimeError)
    with pytest.raises(ValueError, match=r"max_iter"):
        tabular.regularized_nash_equilibrium(envs.random_game(50, seed=1), 1e-5, max_iter=1)


def test_solver_checkpoints_at_the_int64_edge_are_capped():
    # more checkpoints than iterations + 1 only repeat iterations: the checkpoint list is a subset
    # of 0..T containing both ends (was an IndexError from an empty geomspace)
    result = tabular.nash_md_pg(envs.rock_paper_scissors(), 0.1, 15, checkpoints=2**63 - 1)
    iterations = result.metric("iteration")
    assert iterations[0] == 0 and iterations[-1] == 15 and np.all(np.diff(iterations) > 0)
    assert np.all(np.isfinite(result.metric("kl")))


def test_theorem_step_sizes_refuse_a_tau_whose_inverse_overflows():
    with pytest.raises(ValueError, match=r"tau"):
        tabular.theorem_step_sizes(5e-324, 3)
    # τ = 1e-300: η_t = 2/(τ(t+2)) exactly (largest 1e300, finite)
    np.testing.assert_allclose(tabular.theorem_step_sizes(1e-300, 3), 2 / (1e-300 * np.arange(2.0, 5.0)),
                               rtol=1e-15)


def test_agro_at_subnormal_beta():
    reward, ref = np.array([1.0, 0.0, 0.5]), np.full(3, 1 / 3)
    # π* ∝ π_ref exp(r/β) → the indicator of argmax r as β → 0 (was NaN: inf − inf)
    np.testing.assert_array_equal(tabular.agro_optimal_policy(reward, ref, 5e-324), [1.0, 0.0, 0.0])
    # the pairwise loss Var_μ(R̃)/(2β) exceeds float64: refused naming beta (was +inf)
    with pytest.raises(ValueError, match=r"beta"):
        tabular.pairwise_consistency_loss(np.zeros(3), reward, ref, 5e-324, ref)
    # where it is finite it equals Var_μ(r)/(2β) at θ = log π_ref (R̃ = r there), to rounding
    beta = 1e-300
    variance = np.var(reward)  # μ uniform
    assert tabular.pairwise_consistency_loss(np.zeros(3), reward, ref, beta, ref) == pytest.approx(
        variance / (2 * beta), rel=1e-12)
    # train_agro's kl and loss metrics reach spread/β and spread²/(2β): refused beyond 1e300
    # naming beta (they were NaN/inf at β = 5e-324), finite at β = 1e-300 with spread 1
    with pytest.raises(ValueError, match=r"beta"):
        tabular.train_agro(reward, ref, 1e-301, iterations=5, learning_rate=1.0)
    result = tabular.train_agro(reward, ref, 1e-300, iterations=5, learning_rate=1e300, batch_size=2)
    assert all(np.all(np.isfinite(v)) for v in result.metrics.values())


def test_loglog_slope_refuses_too_few_points_by_default():
    x, y = [1.0, 10.0, 100.0], [1.0, 0.1, 0.01]
    with pytest.raises(ValueError, match=r"min_points"):
        tabular.loglog_slope(x, y, min_points=4)
    with pytest.raises(ValueError, match=r"floor"):
        tabular.loglog_slope(x, y, floor=0.5)
    assert np.isnan(tabular.loglog_slope(x, y, min_points=4, too_few="nan"))
    assert tabular.loglog_slope(x, y) == pytest.approx(-1.0, abs=1e-12)  # exact power law


def test_cdf_bellman_horizon_with_a_subnormal_truncation_tol():
    from fixpoint_rl.tabular.model_based import _horizon

    # log(tol) − log(span), not log(tol/span): the ratio underflows to 0 (was "math domain error")
    assert _horizon(0.9, 10.0, 5e-324) == math.ceil((math.log(5e-324) - math.log(10.0)) / math.log(0.9))
    cdfs = tabular.sample_stochastic_cdf_bellman(envs.chain(3), tabular.CategoricalSupport(0.0, 10.0, 11),
                                                 2, 0, truncation_tol=5e-324)
    assert np.all(np.isfinite(cdfs)) and np.allclose(cdfs[..., -1], 1.0)


def test_gpo_errors_name_the_argument_that_caused_them():
    import fuzz_registry as fr

    base = fr._gpo_base() | dict(steps=40)
    # learning_rate·β² = 4.5e9: the descent diverges and the margins overflow (was an error naming
    # only margin and beta)
    with pytest.raises(ValueError, match=r"learning_rate"):
        tabular.train_gpo(**(base | dict(beta=1e4, learning_rate=44.8)))
    # an index beyond num_responses names it
    with pytest.raises(ValueError, match=r"num_responses"):
        tabular.fit_proxy_preference(np.array([0, 1, 0]), np.array([0, 1, 2]), np.array([1, 2, 0]), 2, 2)


def test_q_lambda_bound_at_huge_p_and_lambda_one():
    # 1 − γ^(1/p) = −expm1(log(γ)/p) ≈ log(1/γ)/p: with λ = 1 the bound γ^(1/p)·ε/(1 − γ^(1/p)) is
    # ε·p/log(1/γ) up to a relative O(log(1/γ)/p) = 1e-301 (was ZeroDivisionError: γ^(1/p) rounds
    # to 1). 1e-12 covers the rounding of log and expm1.
    gamma, eps, p = 0.9, 0.1, 1e300
    assert tabular.q_lambda_bound_from_mismatch(gamma, 1.0, eps, p=p) == pytest.approx(
        eps * p / math.log(1 / gamma), rel=1e-12)
    with pytest.raises(ValueError, match=r"\bp=") as info:
        tabular.q_lambda_bound_from_mismatch(1 - 1e-12, 1.0, eps, p=1e300)
    assert "lam" in str(info.value)


def test_iteration_caps_with_a_tolerance_are_refused_when_their_record_cannot_fit():
    # with tol the iteration cap only bounds the run, but the kernels record one change per
    # iteration in an [iterations] array allocated up front: 10¹² → 7.45e3 GiB, refused naming
    # iterations (was a MemoryError)
    with pytest.raises(ValueError, match=r"iterations"):
        tabular.quantile_dp(envs.chain(3), 41, 10**12, 2.1e7)
    with pytest.raises(ValueError, match=r"iterations"):
        tabular.categorical_dp(envs.chain(3), tabular.CategoricalSupport(0.0, 10.0, 11), 10**12, 1e-3)


def test_fit_proxy_preference_refuses_a_subnormal_l2():
    # l2 ≥ 1e-300 is the documented range; 5e-324 left separable data's rewards unbounded
    # (was an unnamed "reward must be finite")
    data = np.array([0, 1, 0]), np.array([0, 1, 2]), np.array([1, 2, 0])
    with pytest.raises(ValueError, match=r"l2"):
        tabular.fit_proxy_preference(*data, 2, 3, l2=5e-324)
    assert np.all(np.isfinite(tabular.fit_proxy_preference(*data, 2, 3, l2=1e-300)))


def test_learned_preference_with_a_subnormal_prior_stays_antisymmetric():
    # P̂(i ≻ j) = (N_ij + prior/2)/(N_ij + N_ji + prior): an unseen pair is ½ by definition; with
    # prior = 5e-324, prior/2 rounds to 0 and the ratio was 0 both ways (refused as not
    # antisymmetric by the game's own check on construction). Oracle: continuity in the prior —
    # at prior = 1e-300 every entry (N_ij/(N_ij + N_ji) for seen pairs, ½ for unseen ones) differs
    # from the prior → 0 limit by ≤ 1e-300 relative, so the two must agree to rounding (1e-15).
    game = envs.tree_game(horizon=2, num_actions=2, seed=0)
    subnormal = tabular.learned_preference_game(game, n_pairs=7, prior=5e-324).preference_values
    tiny = tabular.learned_preference_game(game, n_pairs=7, prior=1e-300).preference_values
    np.testing.assert_allclose(subnormal, tiny, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------------------------
# exhaustive run: python tests/test_fuzz.py [--random N] [--workers W] [names...]
# --------------------------------------------------------------------------------------------

# Fixed-seed random-number cases per name in the exhaustive run (N whole-line + N in-range).
RANDOM_CASES_PER_NAME = int(os.environ.get("FUZZ_RANDOM_CASES", "300"))


def all_cases(name, entry, n_random=RANDOM_CASES_PER_NAME):
    """The listed cases of an entry, then its fixed-seed random-number sample (seed 0)."""
    return [*cases(name, entry), *random_cases(name, entry, n_random, seed=0)]


def _child(n_random, start, names):
    """Run the cases of ``names`` (the first from index ``start``), one JSON line per event,
    flushed: {"warmup": name}, {"name", "index", "kind", "case"} before a case, {"name", "index",
    "outcome", "detail"} after it."""
    import json

    global CALL_LIMIT_S
    for position, name in enumerate(names):
        entry = REGISTRY[name]
        print(json.dumps({"warmup": name}), flush=True)
        limit, CALL_LIMIT_S = CALL_LIMIT_S, 600.0
        try:  # warm-up: the first calls compile (or load cached) Numba kernels; not counted. The
            # extremes too: a contextual game or a sampled variant compiles its own
            # specialisation, which under load can take longer than the per-call limit
            for overrides in ({}, *entry.extremes):
                run_case(name, entry, "valid", None, overrides)
        finally:
            CALL_LIMIT_S = limit
        for index, (kind, arg, overrides) in enumerate(all_cases(name, entry, n_random)):
            if position == 0 and index < start:
                continue
            print(json.dumps({"name": name, "index": index, "kind": kind,
                              "case": describe_case(overrides)}), flush=True)
            outcome, detail = run_case(name, entry, kind, arg, overrides)
            print(json.dumps({"name": name, "index": index, "outcome": outcome, "detail": detail}),
                  flush=True)


def _run_names(names, n_random, hard_limit, report=None):
    """Every case of ``names`` in one child process (imports and Numba cache loads once); a call
    stuck inside a Numba kernel, where SIGALRM cannot interrupt it, is killed after
    ``hard_limit`` seconds and counted as a hang, and a new child resumes at the next case.
    Returns {name: (outcome counts, report lines)}; ``report`` gets each line as it happens."""
    import json
    import selectors
    import subprocess

    class Lines(list):
        def append(self, line):
            super().append(line)
            if report is not None:
                report(line)

    results = {name: (Counter(), Lines(), Counter()) for name in names}
    n_cases = {name: len(all_cases(name, REGISTRY[name], n_random)) for name in names}
    todo, start = list(names), 0
    while todo:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(n_random), str(start), *todo],
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        current, case, kind, finished, timed_out = None, None, None, True, False
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + hard_limit + 120  # start-up and warm-up
        while True:
            if not selector.select(timeout=max(deadline - time.monotonic(), 0)):
                proc.kill()
                timed_out = True
                break
            line = proc.stdout.readline()
            if not line:
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "warmup" in record:
                deadline = time.monotonic() + hard_limit + 120
                current, finished = (record["warmup"], -1), True
                continue
            if "outcome" not in record:
                current, case, kind = (record["name"], record["index"]), record["case"], record["kind"]
                finished = False
                deadline = time.monotonic() + hard_limit
                continue
            finished = True
            counts, lines, by_kind = results[record["name"]]
            counts[record["outcome"]] += 1
            by_kind[kind] += 1
            if record["outcome"] in BAD:
                lines.append(f"{record['outcome']:16s} {record['name']} [{kind}] {case}: {record['detail']}")
        proc.wait()
        selector.close()
        if not timed_out and finished and (current is None or current[1] == n_cases[current[0]] - 1
                                           or current[1] == -1 and n_cases[current[0]] == 0):
            break  # the child ran to the end
        if current is None or current[1] == -1:  # died or stuck before its first case / in warm-up
            name = todo[0] if current is None else current[0]
            counts, lines, _ = results[name]
            counts["hang" if timed_out else "foreign"] += 1
            lines.append(f"{'hang' if timed_out else 'foreign':16s} {name}: process "
                         f"{'killed' if timed_out else 'died'} during start-up or warm-up")
            todo, start = todo[todo.index(name) + 1:], 0
            continue
        name, index = current
        if not finished:
            why = "hang" if timed_out else "foreign"
            counts, lines, by_kind = results[name]
            counts[why] += 1
            by_kind[kind] += 1
            lines.append(f"{why:16s} {name} [{kind}] {case}: process {'killed' if timed_out else 'died'}")
        todo = todo[todo.index(name):]
        start = index + 1
        if start >= n_cases[name]:
            todo, start = todo[1:], 0
    return results


def main(argv):
    """One reproducible enumeration: every listed case of every entry plus a fixed-seed sample of
    random numbers per name (``--random N``: N whole-line and N in-range cases, default
    ``FUZZ_RANDOM_CASES`` = 300). Names are split over ``--workers W`` processes (default 2) by a
    fixed assignment (name i → worker i mod W); each case's outcome is deterministic, so the
    counts do not depend on W. Prints the bad cases, counts by outcome and by function; exit
    status 1 on any bad outcome."""
    from concurrent.futures import ThreadPoolExecutor

    if argv[:1] == ["--child"]:
        _child(int(argv[1]), int(argv[2]), argv[3:])
        return 0
    argv = list(argv)
    n_random, workers = RANDOM_CASES_PER_NAME, int(os.environ.get("FUZZ_WORKERS", "2"))
    for flag in ("--random", "--workers"):
        if flag in argv:
            i = argv.index(flag)
            value = int(argv[i + 1])
            del argv[i : i + 2]
            if flag == "--random":
                n_random = value
            else:
                workers = max(1, value)
    hard_limit = float(os.environ.get("FUZZ_HARD_LIMIT_S", "60"))
    names = argv or PUBLIC
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(f"no registry entry for {unknown}")
        return 2
    start_time = time.perf_counter()
    results = {}

    def work(w):
        results.update(_run_names(names[w::workers], n_random, hard_limit,
                                  report=lambda line: print(line, flush=True)))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, range(workers)))
    totals, per_function, cases_per_function, kinds = Counter(), Counter(), {}, Counter()
    for name in names:
        counts, _, by_kind = results[name]
        totals.update(counts)
        kinds.update(by_kind)
        per_function[name] = sum(counts[b] for b in BAD)
        cases_per_function[name] = sum(counts.values())
    n_total = sum(totals.values())
    n_bad = sum(totals[b] for b in BAD)
    bad_functions = {n: c for n, c in per_function.most_common() if c}
    print(f"\n{n_total} cases over {len(names)} names ({n_random} whole-line + {n_random} in-range "
          f"random-number cases per name with numeric arguments, seed 0) in "
          f"{time.perf_counter() - start_time:.1f} s with {workers} workers")
    print("outcomes:", dict(sorted(totals.items())))
    print("cases by class (valid: base + extremes; invalid: generic + listed; line / inside: random "
          "numbers):", dict(sorted(kinds.items())))
    print("by function (cases: outcome counts):")
    for name in names:
        counts, _, _ = results[name]
        print(f"  {name}: {cases_per_function[name]}: {dict(sorted(counts.items()))}")
    print(f"bad outcomes: {n_bad} over {len(bad_functions)} functions")
    if bad_functions:
        print("bad by function:", bad_functions)
    print(f"{n_total} cases, {n_bad} bad outcomes")
    return 1 if n_bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
