"""Fuzz registry: argument strategies for every name exported by ``fixpoint_rl.tabular`` and
``fixpoint_rl.envs`` (their ``__all__``).

Each public name maps to an :class:`Entry`:

* ``base`` builds a tiny valid call (keyword arguments; tiny sizes so every call is milliseconds);
* ``kinds`` says what each argument is (``real``, ``int``, ``size``, ``bool``, ``choice``,
  ``array``, ``prob``, ``seed``, ``object``, ...). Each kind brings generic invalid values (NaN,
  inf, complex, strings, ``None``, booleans where numbers belong, sizes of 10¹² and 2⁶³ − 1, ...),
  see :data:`GENERIC_INVALID`;
* ``extremes`` lists overrides that lie INSIDE the documented valid range but at its edges
  (τ = 10⁻⁴, μ_min = 10⁻¹², zeros in π, huge supports, ...): the call must return a finite result;
* ``invalid`` lists, per argument, extra values OUTSIDE the documented range: the call must raise a
  ``ValueError`` whose message names that argument;
* ``valid_range`` is the documented valid range (the docstring of the function states it too);
* ``ranges`` (filled from :data:`RANGES` at the end of this file) gives every numeric argument
  (kinds ``real``/``int``/``size`` and ``opt_`` variants) its documented range as a
  :class:`Range` (ends, open or closed, integer or real, log or linear scale, and a ``probe`` that
  caps what the in-range property draws so every call stays milliseconds); ``joint`` (from
  :data:`JOINT`) lists constraints between arguments (e.g. ``learning_rate·β ≤ 2``) under which an
  in-range draw may still be refused with a ``ValueError`` naming them.

Random-number cases (:func:`random_number_case`): one or more numeric arguments drawn anywhere on
the line (``mode="line"``: a finite result or a ``ValueError`` naming a drawn argument) or inside
the declared ranges (``mode="inside"``: a finite result), on top of the base call or, 30 % of the
time, of one of the entry's extremes.

``tests/test_fuzz.py`` draws cases from these with hypothesis and classifies every outcome; a new
public name without an entry fails that test, and so does a numeric argument without a range. To
add a public function: add an entry here and its ranges to :data:`RANGES`.
Values may be :class:`Derived` (computed from the base keyword arguments, e.g. "the base π with a
zero") so that shapes stay consistent.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

import fixpoint_rl.envs as envs
import fixpoint_rl.tabular as tabular

HUGE_SIZE = 10**12  # "absurd" count: refused up front (memory/time estimate in the message)
INT64_EDGE = 2**63 - 1  # iteration counts at int64 overflow


@dataclasses.dataclass(frozen=True)
class Derived:
    """A value computed from the base keyword arguments (keeps shapes consistent)."""

    make: Callable[[dict[str, Any]], Any]
    label: str

    def __repr__(self) -> str:
        return f"<{self.label}>"


@dataclasses.dataclass(frozen=True)
class Range:
    """Documented valid range of one numeric argument (kinds ``real``/``int``/``size`` and their
    ``opt_`` variants, whose ``None`` is valid besides the range).

    ``low``/``high`` (±inf when unbounded), open or closed ends, ``integer`` for counts, ``scale``
    ``"log"`` (draws spread over orders of magnitude) or ``"linear"``. Inside the range a call must
    return a finite result. ``probe`` caps what the in-range property draws so that every call
    stays milliseconds on the tiny registry problems: the documented range of ``iterations`` is
    [1, work budget], the drawn values stay ≤ 60; reals are drawn with magnitudes in
    [10⁻¹⁵, 10¹⁵] (the span of the whole-line property). Write them as interval strings:
    ``span("(0, inf)")``, ``span("[0, 1]", scale="linear")``, ``span("[1, inf)", probe=(1, 60))``
    (integer when written with ``int``: ``span("[1, inf) int")``).
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    scale: str = "log"
    probe: tuple[float, float] | None = None

    def contains(self, x: float) -> bool:
        if self.integer and float(x) != int(x):
            return False
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return bool(above and below)

    def probe_bounds(self) -> tuple[float, float]:
        lo, hi = self.probe if self.probe is not None else (self.low, self.high)
        lo, hi = max(lo, self.low), min(hi, self.high)
        if not self.integer:
            lo, hi = max(lo, -PROBE_MAGNITUDE), min(hi, PROBE_MAGNITUDE)
        return lo, hi

    def __str__(self) -> str:
        def fmt(v):
            return "inf" if v == np.inf else "-inf" if v == -np.inf else f"{v:g}"

        text = ("(" if self.low_open else "[") + f"{fmt(self.low)}, {fmt(self.high)}" + (
            ")" if self.high_open else "]")
        return text + (" int" if self.integer else "")


PROBE_MAGNITUDE = 1e15  # reals drawn by the properties have |x| in [1e-15, 1e15] (plus 0, tiny)


def span(text: str, *, scale: str = "log", probe: tuple[float, float] | None = None) -> Range:
    """``span("(0, 1]")``, ``span("[1, inf) int", probe=(1, 60))``: a :class:`Range`."""
    m = re.fullmatch(r"\s*([\[(])\s*([^,]+),\s*([^\])]+)([\])])\s*(int)?\s*", text)
    if m is None:
        raise ValueError(f"bad range {text!r}")
    return Range(
        low=float(m.group(2)), high=float(m.group(3)), low_open=m.group(1) == "(",
        high_open=m.group(4) == ")", integer=m.group(5) == "int", scale=scale, probe=probe,
    )


@dataclasses.dataclass(frozen=True)
class Joint:
    """A documented constraint between arguments (e.g. ``learning_rate·β ≤ 2``): inside the
    ranges, a ``ValueError`` is acceptable only when ``holds(kwargs)`` is False and the message
    names one of ``args``."""

    args: tuple[str, ...]
    text: str
    holds: Callable[[dict[str, Any]], bool]


@dataclasses.dataclass(frozen=True)
class Entry:
    base: Callable[[], dict[str, Any]]
    kinds: Mapping[str, str]
    valid_range: str
    extremes: tuple[dict[str, Any], ...] = ()
    invalid: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    call: Callable[..., Any] | None = None
    # documented range of every numeric argument (see RANGES at the end of this file)
    ranges: Mapping[str, Range] = dataclasses.field(default_factory=dict)
    joint: tuple[Joint, ...] = ()


# --------------------------------------------------------------------------------------------
# generic invalid values per kind
# --------------------------------------------------------------------------------------------


def _get(b, name):
    # optional arguments absent from the base call: perturb a small stand-in distribution
    return b[name] if b.get(name) is not None else np.array([0.5, 0.5])


def _complex(b, name):
    return np.asarray(_get(b, name), dtype=np.float64) * (1 + 1e-3j)


def _with_nan(b, name):
    a = np.array(_get(b, name), dtype=np.float64, copy=True)
    a.flat[0] = np.nan
    return a


def _with_inf(b, name):
    a = np.array(_get(b, name), dtype=np.float64, copy=True)
    a.flat[-1] = np.inf
    return a


def _negative_entry(b, name):
    a = np.array(_get(b, name), dtype=np.float64, copy=True)
    if a.shape[-1] == 1:
        return -a
    flat = a.reshape(-1, a.shape[-1])
    shift = flat[:, 0] + 0.1
    flat[:, 0] -= shift  # -0.1
    flat[:, -1] += shift
    return flat.reshape(a.shape)


def _unnormalised(b, name):
    return np.asarray(_get(b, name), dtype=np.float64) * 2.0


def _array_generic(name):
    return (
        "abc",
        None,
        Derived(lambda b: _complex(b, name), f"complex {name}"),
        Derived(lambda b: _with_nan(b, name), f"{name} with NaN"),
        Derived(lambda b: _with_inf(b, name), f"{name} with inf"),
        Derived(lambda b: np.zeros((2, 2, 2, 2, 2)), "5-d array"),
    )


def _optional_array_generic(name):
    return _array_generic(name)[0:1] + _array_generic(name)[2:]


def _prob_generic(name):
    return _array_generic(name) + (
        Derived(lambda b: _negative_entry(b, name), f"{name} with a negative entry"),
        Derived(lambda b: _unnormalised(b, name), f"{name} summing to 2"),
    )


_REAL = (float("nan"), float("inf"), -float("inf"), "1.0", None, 1 + 1j, np.array([1.0, 2.0]), True)
_INT = (1.5, "2", None, True, 1 + 1j, np.array([1, 2]))
_SIZE = _INT + (HUGE_SIZE, INT64_EDGE)

GENERIC_INVALID: dict[str, Callable[[str], tuple[Any, ...]]] = {
    "real": lambda name: _REAL,
    "opt_real": lambda name: tuple(v for v in _REAL if v is not None),
    "int": lambda name: _INT,
    "opt_int": lambda name: tuple(v for v in _INT if v is not None),
    "size": lambda name: _SIZE,
    "opt_size": lambda name: tuple(v for v in _SIZE if v is not None),
    "bool": lambda name: ("no", None, 2, 1.0, np.array([True, False])),
    "choice": lambda name: ("no-such-option", None, 3),
    "array": _array_generic,
    # arrays with leading batch dimensions allowed and signed entries (measures, CDFs, atoms)
    "batched": lambda name: _array_generic(name)[:5],
    "opt_batched": lambda name: _optional_array_generic(name)[:4],
    "opt_array": _optional_array_generic,
    "prob": _prob_generic,
    "opt_prob": lambda name: tuple(v for v in _prob_generic(name) if v is not None),
    "seed": lambda name: ("x", 1.5, -1, None, 1 + 1j),
    "object": lambda name: (None, 3, "x"),
    "opt_object": lambda name: (3, "x"),
    "free": lambda name: (),  # e.g. a name or label: anything printable is fine
}


def resolve(value: Any, base: dict[str, Any]) -> Any:
    return value.make(base) if isinstance(value, Derived) else value


def cases(name: str, entry: Entry) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Every case of an entry: (class, argument, overrides); class is "valid" or "invalid"."""
    out: list[tuple[str, str | None, dict[str, Any]]] = [("valid", None, {})]
    out += [("valid", None, dict(ext)) for ext in entry.extremes]
    for arg, kind in entry.kinds.items():
        for value in GENERIC_INVALID[kind](arg):
            out.append(("invalid", arg, {arg: value}))
    for arg, values in entry.invalid.items():
        for value in values:
            out.append(("invalid", arg, {arg: value}))
    return out


# --------------------------------------------------------------------------------------------
# random numbers for the numeric arguments
# --------------------------------------------------------------------------------------------

NUMERIC_KINDS = ("real", "int", "size", "opt_real", "opt_int", "opt_size")
INT64_MIN = -(2**63)
# whole-line integers: uniform in [−10, 20], log-uniform up to 10 × the range's probe cap (large
# enough to leave the probe, small enough that several drawn counts together stay seconds: the
# library refuses only work above 10¹¹ steps, far beyond the per-call limit), or the int64 edges
# and 10¹² (which must be refused up front)
LINE_INT_CAP_FACTOR = 10
LINE_INT_CAP_MIN = 20
TINY = (5e-324, 1e-300, 1e-200)


def numeric_args(entry: Entry) -> list[str]:
    return [a for a, k in entry.kinds.items() if k in NUMERIC_KINDS]


def _integer_kind(kind: str) -> bool:
    return kind.removeprefix("opt_") in ("int", "size")


def draw_line_value(rng: np.random.Generator, integer: bool, cap: int = LINE_INT_CAP_MIN) -> float | int:
    """A number anywhere on the line: sign × 10^U(−15, 15), 0, ±tiny (reals); −10 … cap and the
    int64 edges (integers)."""
    u = rng.random()
    if integer:
        if u < 0.1:
            return int(rng.choice([INT64_EDGE, INT64_MIN, 2**62, HUGE_SIZE]))
        if u < 0.55:
            return int(rng.integers(-10, 21))
        return int(round(10 ** rng.uniform(0, np.log10(cap))))
    if u < 0.05:
        return 0.0
    sign = -1.0 if rng.random() < 0.5 else 1.0
    if u < 0.12:
        return sign * float(rng.choice(TINY))
    return sign * float(10 ** rng.uniform(-15, 15))


def draw_inside_value(rng: np.random.Generator, r: Range) -> float | int:
    """A number strictly inside (or at a closed end of) a declared range, within its probe."""
    lo, hi = r.probe_bounds()
    if r.integer:
        lo_i = math.ceil(lo) + (1 if r.low_open and math.ceil(lo) == r.low else 0)
        hi_i = math.floor(hi) - (1 if r.high_open and math.floor(hi) == r.high else 0)
        if rng.random() < 0.2:
            return int(rng.choice([lo_i, hi_i]))
        if r.scale == "log" and lo_i >= 1 and hi_i > 10:
            return int(min(hi_i, max(lo_i, round(10 ** rng.uniform(np.log10(lo_i), np.log10(hi_i))))))
        return int(rng.integers(lo_i, hi_i + 1))
    ends = [v for v, is_open, end in ((lo, r.low_open, r.low), (hi, r.high_open, r.high))
            if not (is_open and v == end) and np.isfinite(v)]
    if ends and rng.random() < 0.1:
        return float(rng.choice(ends))
    for _ in range(100):
        if r.scale == "linear":
            x = float(rng.uniform(lo, hi))
        else:
            parts = []
            if hi > 0:
                parts.append((1.0, max(lo, 1.0 / PROBE_MAGNITUDE), hi))
            if lo < 0:
                parts.append((-1.0, max(-hi, 1.0 / PROBE_MAGNITUDE), -lo))
            if lo <= 0 <= hi and rng.random() < 0.05:
                x = 0.0
            else:
                sign, a, b = parts[int(rng.integers(len(parts)))]
                a = min(a, b)
                x = sign * float(10 ** rng.uniform(np.log10(a), np.log10(b)))
        if r.contains(x):
            return x
    return float(np.clip((lo + hi) / 2, lo, hi))


def random_number_case(
    entry: Entry, mode: str, rng: np.random.Generator
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Draw one or more numeric arguments: ``mode="line"`` anywhere on the line, ``mode="inside"``
    inside the declared ranges. Returns (the drawn arguments, the overrides)."""
    args = numeric_args(entry)
    if not args:
        return (), {}
    k = 1 if rng.random() < 0.5 else int(rng.integers(1, len(args) + 1))
    chosen = [args[i] for i in sorted(rng.choice(len(args), size=k, replace=False))]
    overrides: dict[str, Any] = {}
    if entry.extremes and rng.random() < 0.3:
        # on top of one of the entry's valid extremes (K = 50 with μ_min = 1e-12, zeros in π, ...)
        overrides.update(entry.extremes[int(rng.integers(len(entry.extremes)))])
    for a in chosen:
        if mode == "line":
            r = entry.ranges[a]
            cap = max(LINE_INT_CAP_MIN, min(LINE_INT_CAP_FACTOR * r.probe_bounds()[1], 10**6))
            overrides[a] = draw_line_value(rng, _integer_kind(entry.kinds[a]), int(cap))
        else:
            overrides[a] = draw_inside_value(rng, entry.ranges[a])
    return tuple(chosen), overrides


def random_cases(name: str, entry: Entry, n: int, seed: int = 0):
    """A reproducible sample: n whole-line and n in-range cases, as (kind, args, overrides)."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    out = []
    for _ in range(n):
        for mode in ("line", "inside"):
            args, overrides = random_number_case(entry, mode, rng)
            if args:
                out.append((mode, args, overrides))
    return out


def function_of(name: str, entry: Entry) -> Callable[..., Any]:
    if entry.call is not None:
        return entry.call
    module = tabular if name in tabular.__all__ else envs
    return getattr(module, name)


def case_strategy(name: str, entry: Entry) -> st.SearchStrategy:
    """Hypothesis strategy over an entry's cases, plus random reals inside declared ranges."""
    return st.sampled_from(cases(name, entry))


# --------------------------------------------------------------------------------------------
# shared tiny problems
# --------------------------------------------------------------------------------------------

K3 = np.full(3, 1 / 3)


def rps():
    return envs.rock_paper_scissors()


def rps_tiny_ref():
    # μ_min = 1e-12: full support, but log μ ≈ -27.6
    ref = np.array([1 - 2e-12, 1e-12, 1e-12])
    return envs.rock_paper_scissors(ref=ref)


def big_game():
    # K = 50, μ_min = 1e-12 (the underflow example)
    ref = np.full(50, 1e-12)
    ref[0] = 1.0 - 49e-12
    return envs.random_game(50, seed=1, ref="uniform").__class__(
        pref=envs.random_game(50, seed=1).pref, ref=ref
    )


def ctx_game():
    return envs.random_contextual_game(2, 3, seed=0)


def dialogue():
    return envs.tree_game(horizon=2, num_actions=2, seed=0)


def dialogue_policy(game, kind="uniform"):
    states = game.reference.shape[0]
    if kind == "uniform":
        return np.full((states, game.num_actions), 1 / game.num_actions)
    pi = np.zeros((states, game.num_actions))
    pi[:, 0] = 1.0
    return pi


def mdp():
    return envs.chain_mdp(3)


def mdp_pi(m=None):
    m = mdp() if m is None else m
    return envs.uniform_policy(m)


def support(m=11, lo=0.0, hi=10.0):
    return tabular.CategoricalSupport(lo, hi, m)


def mrp():
    return envs.chain(3)


def mrp_huge_rewards():
    # |r| = 1e150 / (1 − γ): huge but finite support span
    return envs.MarkovRewardProcess(
        P=np.array([[0.5, 0.5], [0.5, 0.5]]),
        reward=np.array([[1e150, -1e150], [1e150, -1e150]]),
        gamma=0.9,
    )


def _set(arr, idx, value):
    a = np.array(arr, dtype=np.float64, copy=True)
    a[idx] = value
    return a


def pref_matrix(x=2, k=3, seed=0):
    return envs.random_contextual_game(x, k, seed=seed).pref


REFXK = np.full((2, 3), 1 / 3)

# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------

R: dict[str, Entry] = {}

# --- shared types ----------------------------------------------------------------------------

R["SolverResult"] = Entry(
    base=lambda: dict(
        final=np.ones(3) / 3,
        metrics={"iteration": np.arange(3), "kl": np.zeros(3)},
        wall_time_s=0.1,
        compile_time_s=0.0,
        config={"seed": 0},
    ),
    kinds=dict(final="batched", wall_time_s="real", compile_time_s="real", metrics="object"),
    valid_range="final finite real array; metrics a mapping of equal-length 1-D arrays with "
    "'iteration'; times finite ≥ 0",
    invalid=dict(wall_time_s=(-1.0,), metrics=({"a": np.zeros(2), "b": np.zeros(3)},)),
)
R["loglog_slope"] = Entry(
    base=lambda: dict(x=[1.0, 10.0, 100.0], y=[1.0, 0.1, 0.01]),
    kinds=dict(x="array", y="array", floor="real", min_points="int", too_few="choice"),
    valid_range="x > 0, y > floor; at least min_points usable points",
    extremes=({"x": [1e-300, 1.0, 1e300], "y": [1e300, 1.0, 1e-300]},),
    invalid=dict(x=([1.0, 2.0],), min_points=(1,)),
)

# --- NLHF ------------------------------------------------------------------------------------

_game_kinds = dict(game="object")
_tau_small = ({"tau": 1e-4},)

R["regularized_nash_equilibrium"] = Entry(
    base=lambda: dict(game=rps(), tau=0.1),
    kinds=dict(game="object", tau="real", max_iter="int"),
    valid_range="τ ≥ 1e-6 (smaller τ > 0 while float64 resolves π*_τ, else ValueError naming tau), "
    "μ full support, max_iter ≥ 40 (a budget that runs out: ValueError naming max_iter)",
    extremes=(
        {"tau": 1e-4},
        {"tau": 1e-6},
        {"tau": 1e3},
        {"game": Derived(lambda b: rps_tiny_ref(), "μ_min=1e-12"), "tau": 1e-4},
        {"game": Derived(lambda b: ctx_game(), "contextual"), "tau": 1e-5},
        {"game": Derived(lambda b: envs.dice(), "dice"), "tau": 1e-5},
    ),
    invalid=dict(tau=(0.0, -1.0)),
)
R["nash_equilibrium"] = Entry(
    base=lambda: dict(game=rps()),
    kinds=dict(game="object"),
    valid_range="any PreferenceGame",
    extremes=({"game": Derived(lambda b: ctx_game(), "contextual")},),
)
for _n in ("exploitability", "fixed_point_residual"):
    R[_n] = Entry(
        base=lambda: dict(game=rps(), pi=K3, tau=0.1),
        kinds=dict(game="object", pi="prob", tau="real"),
        valid_range="pi a distribution of the game's shape; τ ≥ 0"
        + (" (τ > 0)" if _n == "fixed_point_residual" else ""),
        extremes=(
            {"pi": np.array([1.0, 0.0, 0.0])},
            {"pi": np.array([1.0, 1e-300, 0.0]) / (1 + 1e-300), "tau": 1e-4},
            {"tau": 1e6},
        ),
        invalid=dict(tau=(-1.0,)),
    )
R["preference_against"] = Entry(
    base=lambda: dict(game=rps(), pi=K3),
    kinds=dict(game="object", pi="prob"),
    valid_range="pi a distribution of the game's shape",
    extremes=({"pi": np.array([1.0, 0.0, 0.0])},),
)
R["preference_between"] = Entry(
    base=lambda: dict(game=rps(), pi=K3, pi_prime=np.array([1.0, 0, 0])),
    kinds=dict(game="object", pi="prob", pi_prime="prob"),
    valid_range="pi, pi_prime distributions of the game's shape",
)
R["regularized_preference"] = Entry(
    base=lambda: dict(game=rps(), pi=K3, pi_prime=np.array([0.5, 0.5, 0.0]), tau=0.1),
    kinds=dict(game="object", pi="prob", pi_prime="prob", tau="real"),
    valid_range="pi, pi_prime distributions; τ ≥ 0 (KL terms may be +inf only if π leaves supp μ)",
    extremes=({"tau": 1e6}, {"pi": np.array([1.0, 0.0, 0.0]), "tau": 1e-4}),
    invalid=dict(tau=(-1.0,)),
)

_solver_common_kinds = dict(
    game="object",
    tau="real",
    iterations="size",
    init="opt_prob",
    reference="opt_object",
    checkpoints="int",
    checkpoint_every="opt_int",
)


def _nlhf_entry(extra_kinds=None, extremes=(), invalid=None, base_extra=None):
    base_extra = dict(base_extra or {})
    kinds = dict(_solver_common_kinds)
    kinds.update(extra_kinds or {})
    return Entry(
        base=lambda: dict(game=rps(), tau=0.1, iterations=20, checkpoints=3, **base_extra),
        kinds=kinds,
        valid_range="τ > 0 (down to 1e-4), 1 ≤ iterations with iterations·K²·X below the work "
        "budget, μ full support (μ_min ≥ 1e-12)",
        extremes=(
            {"tau": 1e-4},
            {"tau": 1e3, **({"eta": 1e-3} if "eta" in base_extra else {})},
            {"game": Derived(lambda b: rps_tiny_ref(), "μ_min=1e-12"), "tau": 1e-3},
            {"game": Derived(lambda b: big_game(), "K=50 μ_min=1e-12"), "tau": 1e-3},
            {"game": Derived(lambda b: ctx_game(), "contextual")},
            {"iterations": 1},
            *extremes,
        ),
        invalid=dict(tau=(0.0, -1.0), iterations=(0, -5), checkpoints=(1,), **(invalid or {})),
    )


R["nash_md"] = _nlhf_entry(
    dict(eta="opt_real", schedule="choice", n_samples="opt_size", seed="seed"),
    extremes=({"eta": 10.0, "tau": 0.1, "schedule": "constant"}, {"n_samples": 1},
              {"schedule": "constant", "eta": 1e-3}),
    invalid=dict(eta=(-1.0, 0.0, 100.0)),
)
R["self_play_md"] = _nlhf_entry(
    dict(eta="opt_real", schedule="choice", n_samples="opt_size", seed="seed"),
    extremes=({"eta": 10.0, "tau": 0.1}, {"n_samples": 1}, {"schedule": "theorem", "eta": None}),
    invalid=dict(eta=(-1.0, 0.0, 100.0)),
    base_extra=dict(eta=0.5),
)
R["nash_mirror_prox"] = _nlhf_entry(
    dict(eta="real"), extremes=({"eta": 1e3}, {"eta": 1e-6}), invalid=dict(eta=(-1.0, 0.0))
)
R["online_mirror_descent"] = _nlhf_entry(
    dict(eta="opt_real", schedule="choice"),
    extremes=({"eta": 10.0, "schedule": "constant"}, {"schedule": "theorem", "eta": None}),
    invalid=dict(eta=(-1.0, 0.0, 1e3)),
    base_extra=dict(eta=0.5),
)
R["fictitious_play"] = _nlhf_entry()
R["nash_md_pg"] = _nlhf_entry(
    dict(learning_rate="real", mixture="real", n_samples="opt_size", seed="seed"),
    extremes=({"learning_rate": 1e6}, {"tau": 1e6}, {"mixture": 1.0}, {"n_samples": 1}),
    invalid=dict(learning_rate=(0.0, -1.0), mixture=(-0.1, 1.5)),
)
R["best_response_to_reference"] = Entry(
    base=lambda: dict(game=rps(), tau=0.1),
    kinds=dict(game="object", tau="real", reference="opt_object"),
    valid_range="τ > 0 (down to 1e-6)",
    extremes=(
        {"tau": 1e-6},
        {"tau": 1e6},
        {"game": Derived(lambda b: big_game(), "K=50 μ_min=1e-12"), "tau": 1e-3},
    ),
    invalid=dict(tau=(0.0, -1.0)),
)
R["rlhf_bradley_terry"] = Entry(
    base=lambda: dict(game=envs.dice(), tau=0.1),
    kinds=dict(game="object", tau="real", n_pairs="opt_size", seed="seed", reference="opt_object"),
    valid_range="τ = 0 (unregularised, no kl column) or τ ≥ 1e-6 (the kl metric needs π*_τ); "
    "n_pairs ≥ 1 or None (exact)",
    extremes=(
        {"tau": 0.0},
        {"tau": 1e-6},
        {"game": Derived(lambda b: big_game(), "K=50 μ_min=1e-12"), "tau": 1e-3},
        {"n_pairs": 1},
    ),
    invalid=dict(tau=(-1.0,), n_pairs=(0,)),
)
for _n in ("nash_md_step", "self_play_md_step", "nash_mirror_prox_step"):
    R[_n] = Entry(
        base=lambda: dict(pi=K3, ref=K3, pref=rps().pref, eta=0.1, tau=0.1),
        kinds=dict(pi="prob", ref="prob", pref="array", eta="real", tau="real"),
        valid_range="pi a distribution (zeros allowed), ref full support, η > 0, τ > 0"
        + (", ητ ≤ 1" if _n != "nash_mirror_prox_step" else ""),
        extremes=(
            {"pi": np.array([1.0, 0.0, 0.0]), "eta": 10.0, "tau": 0.1},
            {"pi": np.array([1.0, 0.0, 0.0])},
            {"eta": 1e-8},
            {"ref": np.array([1 - 2e-12, 1e-12, 1e-12]), "tau": 1e-4},
        ),
        invalid=dict(
            eta=(0.0, -1.0) + ((1e3,) if _n != "nash_mirror_prox_step" else ()),
            tau=(0.0, -1.0),
            ref=(np.array([1.0, 0.0, 0.0]),),
            pref=(np.full((3, 3), 2.0), np.ones((2, 2))),
        ),
    )
R["theorem_step_sizes"] = Entry(
    base=lambda: dict(tau=0.1, iterations=5),
    kinds=dict(tau="real", iterations="size"),
    valid_range="τ ≥ 1e-308 (1/τ finite), iterations ≥ 1 (array of T floats must fit in memory)",
    extremes=({"tau": 1e-300}, {"tau": 1e300}),
    invalid=dict(tau=(0.0,), iterations=(0,)),
)

# --- MTPO ------------------------------------------------------------------------------------

R["preference_q_values"] = Entry(
    base=lambda: (lambda g: dict(
        game=g, pi=dialogue_policy(g), opponent=dialogue_policy(g), alpha=0.1
    ))(dialogue()),
    kinds=dict(game="object", pi="prob", opponent="prob", alpha="real"),
    valid_range="pi, opponent [S, A] row-stochastic; α ≥ 0",
    extremes=(
        {"pi": Derived(lambda b: dialogue_policy(b["game"], "det"), "deterministic π")},
        {"alpha": 1e6},
    ),
    invalid=dict(alpha=(-1.0,)),
)
R["trajectory_kl"] = Entry(
    base=lambda: (lambda g: dict(game=g, pi=dialogue_policy(g), mu=g.reference))(dialogue()),
    kinds=dict(game="object", pi="prob", mu="prob"),
    valid_range="pi, mu [S, A] row-stochastic (KL +inf only when π leaves supp μ)",
    extremes=({"pi": Derived(lambda b: dialogue_policy(b["game"], "det"), "deterministic π")},),
)
R["multiturn_exploitability"] = Entry(
    base=lambda: (lambda g: dict(game=g, pi=dialogue_policy(g), alpha=0.1))(dialogue()),
    kinds=dict(game="object", pi="prob", alpha="real"),
    valid_range="pi [S, A] row-stochastic; α > 0",
    extremes=({"alpha": 1e-4}, {"alpha": 1e6},
              {"pi": Derived(lambda b: dialogue_policy(b["game"], "det"), "deterministic π")}),
    invalid=dict(alpha=(0.0, -1.0)),
)
R["multiturn_regularized_nash"] = Entry(
    base=lambda: dict(game=dialogue(), alpha=0.1),
    kinds=dict(game="object", alpha="real", tol="real", max_iterations="size", damping="opt_real"),
    valid_range="α > 0 (down to 1e-4); tol > 0; max_iterations ≥ 1; damping in (0, 1]",
    extremes=({"alpha": 1e-4}, {"alpha": 1e3}),
    invalid=dict(alpha=(0.0, -1.0), tol=(0.0, -1.0), damping=(0.0, 1.5)),
)


def _mtpo_entry():
    return Entry(
        base=lambda: dict(game=dialogue(), alpha=0.1, iterations=10, checkpoints=3),
        kinds=dict(
            game="object",
            alpha="real",
            iterations="size",
            eta="opt_real",
            schedule="choice",
            n_samples="opt_size",
            seed="seed",
            init="opt_prob",
            checkpoints="int",
            checkpoint_every="opt_int",
            reference_solution="opt_array",
            sampling="choice",
            values="choice",
        ),
        valid_range="α > 0 (down to 1e-4); iterations ≥ 1 within the work budget; η > 0 with ηα ≤ 1",
        extremes=(
            {"alpha": 1e-4},
            {"alpha": 1e-4, "iterations": 30},
            {"alpha": 1e3},
            {"n_samples": 1},
            {"iterations": 1},
        ),
        invalid=dict(alpha=(0.0, -1.0), iterations=(0,), eta=(0.0, -1.0, 1e3), checkpoints=(1,)),
    )


R["mtpo"] = _mtpo_entry()
R["mtpo_tau"] = _mtpo_entry()
R["multiturn_preference"] = Entry(
    base=lambda: (lambda g: dict(
        game=g, pi=dialogue_policy(g), opponent=dialogue_policy(g, "det"), alpha=0.1
    ))(dialogue()),
    kinds=dict(game="object", pi="prob", opponent="prob", alpha="real"),
    valid_range="pi, opponent [S, A] row-stochastic; α ≥ 0",
    extremes=({"alpha": 1e6},),
    invalid=dict(alpha=(-1.0,)),
)
R["soft_best_response"] = Entry(
    base=lambda: (lambda g: dict(
        game=g, terminal_values=np.linspace(0, 1, int(g.final_starts[-1])), alpha=0.1
    ))(dialogue()),
    kinds=dict(game="object", terminal_values="array", alpha="real"),
    valid_range="terminal_values [F] finite; α > 0 (down to 1e-6)",
    extremes=({"alpha": 1e-6}, {"alpha": 1e6},
              {"terminal_values": Derived(lambda b: np.linspace(-1e6, 1e6, int(b["game"].final_starts[-1])), "±1e6")}),
    invalid=dict(alpha=(0.0, -1.0)),
)
R["mtpo_theorem_bound"] = Entry(
    base=lambda: dict(game=dialogue(), alpha=0.1, t=10),
    kinds=dict(game="object", alpha="real", t="array", variant="choice"),
    valid_range="α > 0 (down to 1e-4); t ≥ 0",
    extremes=({"alpha": 1e-4}, {"alpha": 1e-4, "variant": "mtpo_tau"}, {"t": 0}, {"t": 10**15}),
    invalid=dict(alpha=(0.0, -1.0), t=(-1,)),
)
R["final_state_distribution"] = Entry(
    base=lambda: (lambda g: dict(game=g, pi=dialogue_policy(g)))(dialogue()),
    kinds=dict(game="object", pi="prob"),
    valid_range="pi [S, A] row-stochastic",
)
R["reward_rl"] = Entry(
    base=lambda: dict(game=envs.random_layered_game(horizon=2, with_reward=True), alpha=0.1),
    kinds=dict(game="object", alpha="real", reward="opt_array"),
    valid_range="α > 0 (down to 1e-6); reward [F] finite (default: the game's final_reward)",
    extremes=({"alpha": 1e-6}, {"alpha": 1e6}),
    invalid=dict(alpha=(0.0, -1.0)),
)
R["multiturn_rlhf"] = Entry(
    base=lambda: dict(game=dialogue(), alpha=0.1),
    kinds=dict(game="object", alpha="real", n_pairs="opt_size", seed="seed", l2="real"),
    valid_range="α > 0; l2 > 0 (down to 1e-300); n_pairs ≥ 1 or None",
    extremes=({"l2": 1e-300}, {"n_pairs": 1}, {"alpha": 1e-4}),
    invalid=dict(alpha=(0.0, -1.0), l2=(-1.0, 0.0), n_pairs=(0,)),
)
for _n in ("single_turn_rlhf", "single_turn_nash_md"):
    R[_n] = Entry(
        base=lambda: dict(game=dialogue(), alpha=0.1),
        kinds=dict(game="object", alpha="real", signal="choice", n_pairs="opt_size",
                   n_rollouts="opt_size", seed="seed"),
        valid_range="α > 0 (down to 1e-4); n_pairs, n_rollouts ≥ 1 or None",
        extremes=({"alpha": 1e-4}, {"n_pairs": 1, "n_rollouts": 1}),
        invalid=dict(alpha=(0.0, -1.0), n_pairs=(0,), n_rollouts=(0,)),
    )
R["learned_preference_game"] = Entry(
    base=lambda: dict(game=dialogue(), n_pairs=5),
    kinds=dict(game="object", n_pairs="size", seed="seed", prior="real"),
    valid_range="n_pairs ≥ 1; prior > 0",
    extremes=({"n_pairs": 1}, {"prior": 1e-300}, {"prior": 1e300}),
    invalid=dict(n_pairs=(0,), prior=(0.0, -1.0)),
)

# --- distributional core and Q(lambda) -------------------------------------------------------

R["CategoricalSupport"] = Entry(
    base=lambda: dict(v_min=0.0, v_max=1.0, m=5),
    kinds=dict(v_min="real", v_max="real", m="size"),
    valid_range="v_min < v_max finite with finite span, 2 ≤ m within memory",
    extremes=({"v_min": -1e300, "v_max": 1e300}, {"v_min": 0.0, "v_max": 1e-300}),
    invalid=dict(v_max=(-1.0, 0.0), m=(1, 0)),
)
R["categorical_projection"] = Entry(
    base=lambda: dict(atoms_src=np.array([0.3, 2.5]), mass=np.array([0.5, 0.5]), support=support()),
    kinds=dict(atoms_src="batched", mass="batched", support="object"),
    valid_range="atoms_src finite (any values, clipped to the support); mass finite (signed allowed)",
    extremes=({"atoms_src": np.array([-1e300, 1e300])},),
)
for _n in ("cramer_distance", "wasserstein1"):
    R[_n] = Entry(
        base=lambda: dict(mass_p=np.full(11, 1 / 11), mass_q=np.eye(11)[3], support=support()),
        kinds=dict(mass_p="batched", mass_q="batched", support="opt_object", atoms_p="opt_batched",
                   atoms_q="opt_batched") | ({"squared": "bool"} if _n == "cramer_distance" else {}),
        valid_range="mass_p, mass_q finite (signed) measures of equal total mass on a common "
        "support (or on atoms_p/atoms_q)",
        extremes=({"support": Derived(lambda b: support(11, -1e300, 1e300), "huge support")},
                  {"mass_p": Derived(lambda b: _negative_entry(b, "mass_p"), "signed mass_p")}),
        invalid=dict(mass_p=(Derived(lambda b: _unnormalised(b, "mass_p"), "mass_p summing to 2"),)),
    )
R["to_cdf"] = Entry(
    base=lambda: dict(mass=np.full(4, 0.25)),
    kinds=dict(mass="batched"),
    valid_range="mass [..., M] finite (signed measures allowed)",
)
R["from_cdf"] = Entry(
    base=lambda: dict(cdf=np.array([0.25, 0.5, 0.75, 1.0])),
    kinds=dict(cdf="batched"),
    valid_range="cdf [..., M] finite (CDF coordinates of any signed measure)",
)
R["distribution_mean"] = Entry(
    base=lambda: dict(mass=np.full(11, 1 / 11), support=support()),
    kinds=dict(mass="batched", support="object"),
    valid_range="mass [..., M] finite (signed) on the support",
    extremes=({"support": Derived(lambda b: support(11, -1e300, 1e300), "huge support")},),
)
R["pushforward"] = Entry(
    base=lambda: dict(atoms=np.array([0.0, 0.5, 1e308]), reward=1.0, gamma=0.9),
    kinds=dict(atoms="batched", gamma="real"),
    valid_range="atoms finite, reward finite (scalar or broadcast over leading dims), γ in [0, 1]; "
    "every image r + γz must stay finite",
    extremes=({"atoms": np.array([-1e300, 1e300]), "reward": 1e300, "gamma": 0.5},
              {"reward": np.array([1.0, 2.0])}),
    invalid=dict(gamma=(-0.1, 1.5),
                 reward=(float("nan"), float("inf"), "1.0", None, 1 + 1j, True, 1e308)),
)
_q_kinds = dict(
    mdp="object", pi="prob", mu="prob", lam="real", support="object", trace="choice",
    projection="choice", horizon="opt_size",
)


def _q_base():
    m = mdp()
    return dict(mdp=m, pi=mdp_pi(m), mu=mdp_pi(m), lam=0.5, support=support())


R["distributional_operator"] = Entry(
    base=lambda: (lambda b: b | {"eta": np.full((3, 2, 11), 1 / 11)})(_q_base()),
    kinds=_q_kinds | dict(eta="array", tol="real", max_inner="size"),
    valid_range="λ in [0, 1]; eta [S, A, M] signed masses of total 1 per (s, a); pi, mu [S, A]; tol > 0",
    extremes=({"lam": 1.0}, {"lam": 0.0},
              {"pi": Derived(lambda b: _set(b["pi"], (slice(None), 1), 0.0) * 2, "det π")},
              {"eta": Derived(lambda b: _negative_entry(b, "eta"), "signed eta")}),
    invalid=dict(lam=(-0.1, 1.5), tol=(0.0, -1.0),
                 eta=(Derived(lambda b: _unnormalised(b, "eta"), "eta of mass 2"),)),
)
R["contraction_modulus"] = Entry(
    base=lambda: _q_base() | dict(n_probes=2, iterations=3),
    kinds=_q_kinds | dict(mode="choice", n_probes="size", iterations="size", seed="seed"),
    valid_range="λ in [0, 1]; n_probes, iterations ≥ 1",
    extremes=({"lam": 1.0}, {"lam": 0.0}),
    invalid=dict(lam=(-0.1, 1.5), n_probes=(0,), iterations=(0,)),
)
R["q_lambda_contraction_bound"] = Entry(
    base=lambda: (lambda b: {k: b[k] for k in ("mdp", "pi", "mu", "lam")})(_q_base()),
    kinds=dict(mdp="object", pi="prob", mu="prob", lam="real", p="real"),
    valid_range="mdp a TabularMDP; pi, mu [S, A] distributions; λ in [0, 1]; p ≥ 1",
    extremes=({"lam": 1.0}, {"lam": 0.0}, {"p": 1e300}),
    invalid=dict(lam=(-0.1, 1.5), p=(0.5,), mdp=(0.9,)),
)
R["q_lambda_bound_from_mismatch"] = Entry(
    base=lambda: dict(gamma=0.9, lam=0.5, eps=0.1),
    kinds=dict(gamma="real", lam="real", eps="real", p="real"),
    valid_range="γ in [0, 1), λ in [0, 1], ε = max_x ‖π − μ‖₁ in [0, 2], p ≥ 1",
    extremes=({"gamma": 0.0}, {"gamma": 1 - 1e-16}, {"p": 1e300}),
    invalid=dict(gamma=(1.0, -0.1), lam=(-0.1, 1.5), eps=(-0.1, 2.5), p=(0.5,)),
)
R["projection_matrix"] = Entry(
    base=lambda: dict(atoms_src=np.array([0.3, 2.5]), support=support()),
    kinds=dict(atoms_src="batched", support="object"),
    valid_range="atoms_src finite",
    extremes=({"atoms_src": np.array([-1e300, 1e300])},),
)
R["iterate_distributional_operator"] = Entry(
    base=lambda: _q_base() | dict(max_iterations=5),
    kinds=_q_kinds | dict(eta0="opt_prob", tol="real", max_iterations="size", reference="opt_prob"),
    valid_range="λ in [0, 1]; tol > 0; max_iterations ≥ 1 within the work budget",
    extremes=({"lam": 1.0},),
    invalid=dict(lam=(-0.1, 1.5), tol=(0.0, -1.0), max_iterations=(0,)),
)
R["trace_coefficients"] = Entry(
    base=lambda: dict(pi=np.array([[0.5, 0.5]]), mu=np.array([[0.5, 0.5]]), lam=0.5, trace="q_lambda"),
    kinds=dict(pi="prob", mu="prob", lam="real", trace="choice"),
    valid_range="pi, mu [S, A] distributions; λ in [0, 1]",
    extremes=({"mu": np.array([[1 - 1e-300, 1e-300]]), "trace": "retrace"},
              {"mu": np.array([[1 - 1e-300, 1e-300]]), "trace": "n_step"}),
    invalid=dict(lam=(-0.1, 1.5)),
)
R["value_mode_rate"] = Entry(
    base=lambda: _q_base() | dict(iterations=3),
    kinds={k: v for k, v in _q_kinds.items() if k not in ("projection", "horizon")}
    | dict(iterations="size"),
    valid_range="λ in [0, 1]; iterations ≥ 1",
    extremes=({"lam": 1.0},),
    invalid=dict(lam=(-0.1, 1.5), iterations=(0,)),
)
R["policy_q_values"] = Entry(
    base=lambda: dict(mdp=mdp(), pi=mdp_pi()),
    kinds=dict(mdp="object", pi="prob"),
    valid_range="pi [S, A] row-stochastic",
    extremes=({"mdp": Derived(lambda b: envs.chain_mdp(3, gamma=1 - 1e-12), "γ=1-1e-12")},),
)
R["categorical_evaluation_fixed_point"] = Entry(
    base=lambda: dict(mdp=mdp(), pi=mdp_pi(), support=support()),
    kinds=dict(mdp="object", pi="prob", support="object", tol="real", max_iterations="size"),
    valid_range="pi [S, A] row-stochastic; tol > 0; max_iterations ≥ 1",
    invalid=dict(tol=(0.0, -1.0), max_iterations=(0,)),
)
R["monte_carlo_returns"] = Entry(
    base=lambda: dict(mdp=mdp(), pi=mdp_pi(), n_samples=5, seed=0, horizon=20),
    kinds=dict(mdp="object", pi="prob", n_samples="size", seed="seed", horizon="opt_size"),
    valid_range="n_samples ≥ 1 and n_samples·horizon within the work budget",
    invalid=dict(n_samples=(0,), horizon=(0,)),
)


def _sampled_target_base():
    m = mdp()
    s = support()
    return dict(
        eta=np.full((3, 2, 11), 1 / 11),
        pi=mdp_pi(m),
        states=np.array([0, 1, 2]),
        actions=np.array([0, 1, 0]),
        rewards=np.array([1.0, 0.0]),
        lam=0.5,
        support=s,
        gamma=0.9,
    )


R["sampled_distributional_target"] = Entry(
    base=_sampled_target_base,
    kinds=dict(eta="array", pi="prob", states="array", actions="array", rewards="array", lam="real",
               support="object", gamma="real", trace="choice", mu="opt_prob", projection="choice"),
    valid_range="eta [S, A, M]; states/actions [n+1] indices; rewards [n]; λ in [0, 1], γ in [0, 1)",
    invalid=dict(lam=(-0.1, 1.5), gamma=(-0.1, 1.0), states=(np.array([0, 7, 2]),),
                 actions=(np.array([0, 5, 0]),)),
)
R["distributional_td_learning"] = Entry(
    base=lambda: _q_base() | dict(n_steps=2, n_updates=20, n_checkpoints=2),
    kinds={k: v for k, v in _q_kinds.items() if k != "horizon"}
    | dict(n_steps="size", n_updates="size", n_checkpoints="size", spacing="choice",
           step_exponent="real", reference="opt_prob", seed="seed"),
    valid_range="λ in [0, 1]; n_steps, n_updates ≥ 1 within the work budget; step_exponent in [0, 1]",
    extremes=({"step_exponent": 0.0}, {"lam": 1.0}),
    invalid=dict(lam=(-0.1, 1.5), n_updates=(0,), step_exponent=(-0.1, 2.0)),
)

# --- DCFP --------------------------------------------------------------------------------------

R["sample_empirical_model"] = Entry(
    base=lambda: dict(mrp=mrp(), n_samples=5, seed=0),
    kinds=dict(mrp="object", n_samples="size", seed="seed", policy="opt_prob"),
    valid_range="n_samples ≥ 1 with S·A·n_samples within the work budget",
    invalid=dict(n_samples=(0,)),
)
R["categorical_fixed_point"] = Entry(
    base=lambda: dict(mrp=mrp(), support=support()),
    kinds=dict(mrp="object", support="object", policy="opt_prob", method="choice"),
    valid_range="support covers the MRP's returns (any support accepted: mass is clipped)",
    extremes=({"mrp": Derived(lambda b: envs.chain(3, gamma=1 - 1e-9), "γ≈1")},),
)
R["categorical_dp"] = Entry(
    base=lambda: dict(mrp=mrp(), support=support(), iterations=5),
    kinds=dict(mrp="object", support="object", iterations="opt_size", tol="opt_real",
               policy="opt_prob", init="opt_prob"),
    valid_range="iterations ≥ 1 (within the work budget) or tol > 0",
    invalid=dict(iterations=(0,), tol=(0.0, -1.0)),
)
R["quantile_dp"] = Entry(
    base=lambda: dict(mrp=mrp(), m=5, iterations=5),
    kinds=dict(mrp="object", m="size", iterations="opt_size", tol="opt_real", policy="opt_prob"),
    valid_range="m ≥ 1; iterations ≥ 1 (within the work budget) or tol > 0",
    extremes=({"mrp": Derived(lambda b: mrp_huge_rewards(), "|r|=1e150")},),
    invalid=dict(m=(0,), iterations=(0,), tol=(0.0, -1.0)),
)
R["monte_carlo_return_distribution"] = Entry(
    base=lambda: dict(mrp=mrp(), n_episodes=5, seed=0),
    kinds=dict(mrp="object", n_episodes="size", seed="seed", policy="opt_prob", truncation_tol="real"),
    valid_range="n_episodes ≥ 1 within the work budget; truncation_tol > 0",
    invalid=dict(n_episodes=(0,), truncation_tol=(0.0, -1.0)),
)
R["sample_stochastic_cdf_bellman"] = Entry(
    base=lambda: dict(mrp=mrp(), support=support(), n=3, seed=0),
    kinds=dict(mrp="object", support="object", n="size", seed="seed", policy="opt_prob",
               truncation_tol="real"),
    valid_range="n ≥ 1 within the work budget; truncation_tol > 0",
    invalid=dict(n=(0,), truncation_tol=(0.0, -1.0)),
)
def _sparse_chain():
    import scipy.sparse

    return scipy.sparse.csr_matrix(mrp().P)


R["SparseMarkovRewardProcess"] = Entry(
    base=lambda: dict(P=_sparse_chain(), reward=mrp().reward, gamma=0.9),
    kinds=dict(P="object", reward="array", gamma="real"),
    valid_range="P [S, S] scipy.sparse row-stochastic; reward [S, S] finite on P's pattern; γ in [0, 1)",
    extremes=({"gamma": 0.0},),
    invalid=dict(gamma=(1.0, -0.1)),
)
R["dcfp_linear_system"] = Entry(
    base=lambda: dict(mrp=mrp(), support=support()),
    kinds=dict(mrp="object", support="object", policy="opt_prob"),
    valid_range="any MRP and support",
)
R["high_resolution_reference"] = Entry(
    base=lambda: dict(mrp=mrp(), m_fine=51),
    kinds=dict(mrp="object", m_fine="size", support="opt_object", policy="opt_prob", method="choice"),
    valid_range="m_fine ≥ 2 within memory; returns of finite span",
    extremes=({"mrp": Derived(lambda b: mrp_huge_rewards(), "|r|=1e150")},),
    invalid=dict(m_fine=(1,)),
)
R["HighResolutionReference"] = Entry(
    base=lambda: dict(atoms=np.linspace(0, 1, 5), probs=np.full((2, 5), 0.2), w1_bias_bound=0.01),
    kinds=dict(atoms="array", probs="prob", w1_bias_bound="real"),
    valid_range="atoms [M] increasing; probs [S, M] distributions; w1_bias_bound ≥ 0",
    invalid=dict(w1_bias_bound=(-1.0,), atoms=(np.array([1.0, 0.0, 2.0, 3.0, 4.0]),)),
)
R["sup_wasserstein1"] = Entry(
    base=lambda: dict(atoms_p=np.linspace(0, 1, 5), probs_p=np.full((2, 5), 0.2),
                      atoms_q=np.linspace(0, 2, 3), probs_q=np.full((2, 3), 1 / 3)),
    kinds=dict(atoms_p="array", probs_p="opt_prob", atoms_q="array", probs_q="opt_prob"),
    valid_range="atoms [M] finite; probs [S, M] distributions with matching S",
    extremes=({"atoms_p": np.array([-1e300, 0, 0, 0, 1e300])},),
    invalid=dict(atoms_p=(3.0,), probs_q=(np.full((3, 3), 1 / 3),)),
)

# --- language-model papers on bandits ----------------------------------------------------------

_gpo_kinds = ("logistic", "squared", "hinge", "exponential", "truncated_quadratic", "savage")
_bounded_kinds = ("logistic", "hinge", "savage")  # finite for every finite β·margin
R["gpo_loss"] = Entry(
    base=lambda: dict(margin=np.array([-1.0, 0.0, 2.0]), beta=0.5, kind="squared"),
    kinds=dict(margin="batched", beta="real", kind="choice"),
    valid_range="margin finite, β > 0, with the loss of β·margin finite (|β·margin| ≲ 1e154 for "
    "quadratic kinds, β·margin ≥ −709 for exponential)",
    extremes=tuple({"margin": np.array([-1e300, 1e300]), "beta": 1.0, "kind": k} for k in _bounded_kinds)
    + tuple({"margin": np.array([-700.0, 1e150]), "beta": 1.0, "kind": k}
            for k in ("squared", "truncated_quadratic", "exponential"))
    + ({"beta": 1e-300, "kind": "logistic"}, {"kind": "dpo"}),
    invalid=dict(beta=(0.0, -1.0), margin=(np.array([1e300]), np.array([-1e300]))),
)
R["gpo_loss_derivative"] = Entry(
    base=lambda: dict(margin=np.array([-1.0, 0.0, 2.0]), beta=0.5, kind="squared"),
    kinds=dict(margin="batched", beta="real", kind="choice"),
    valid_range="as gpo_loss: margin finite, β > 0, the derivative of β·margin finite",
    extremes=tuple({"margin": np.array([-1e300, 1e300]), "beta": 1.0, "kind": k} for k in _bounded_kinds)
    + tuple({"margin": np.array([-700.0, 1e150]), "beta": 1.0, "kind": k}
            for k in ("squared", "truncated_quadratic", "exponential")),
    invalid=dict(beta=(0.0, -1.0)),
)
R["bayes_link"] = Entry(
    base=lambda: dict(p=np.array([0.1, 0.5, 0.9]), kind="logistic"),
    kinds=dict(p="batched", kind="choice"),
    valid_range="p in (0, 1)",
    extremes=tuple({"p": np.array([1e-300, 1 - 1e-16]), "kind": k} for k in _gpo_kinds),
    invalid=dict(p=(np.array([-0.1]), np.array([1.5]))),
)


def _gpo_base():
    pref = pref_matrix()
    w = tabular.preference_pair_weights(pref, REFXK)
    return dict(ref=REFXK, pair_weights=w, beta=0.5, kind="squared")


R["train_gpo"] = Entry(
    base=lambda: _gpo_base() | dict(steps=5, num_checkpoints=2),
    kinds=dict(ref="prob", pair_weights="array", beta="real", kind="choice", steps="size",
               learning_rate="real", num_checkpoints="size", init_logits="opt_array",
               pref="opt_array", target="opt_prob", context_probs="opt_prob"),
    valid_range="β > 0; learning_rate > 0; steps ≥ 1 within the work budget",
    # learning_rate = 16 at β = 0.5: learning_rate·β² = 4, the documented stability limit
    extremes=({"beta": 1e-4}, {"beta": 1e4, "learning_rate": 4e-8}, {"learning_rate": 16.0}),
    invalid=dict(beta=(0.0, -1.0), steps=(0,), learning_rate=(0.0, -1.0)),
)
R["solve_gpo"] = Entry(
    base=lambda: _gpo_base() | dict(max_iterations=20),
    kinds=dict(ref="prob", pair_weights="array", beta="real", kind="choice", max_iterations="size",
               tolerance="real", init_logits="opt_array", pref="opt_array", target="opt_prob",
               context_probs="opt_prob"),
    valid_range="β > 0 (down to 1e-4); max_iterations ≥ 1; tolerance > 0",
    extremes=({"beta": 1e-4}, {"beta": 1e4}),
    invalid=dict(beta=(0.0, -1.0), max_iterations=(0,), tolerance=(0.0, -1.0)),
)
R["offline_regularizer"] = Entry(
    base=lambda: (lambda b: dict(policy=REFXK, ref=REFXK, pair_weights=b["pair_weights"]))(_gpo_base()),
    kinds=dict(policy="prob", ref="prob", pair_weights="array"),
    valid_range="policy, ref [X, K] full-support distributions; pair_weights [X, K, K] ≥ 0",
    extremes=({"policy": np.array([[1 - 2e-300, 1e-300, 1e-300]] * 2)},),
)
R["preference_pair_weights"] = Entry(
    base=lambda: dict(pref=pref_matrix(), coverage=REFXK),
    kinds=dict(pref="array", coverage="prob", context_probs="opt_prob"),
    valid_range="pref [X, K, K] preference matrices; coverage [X, K] distributions (zeros allowed)",
)
R["sample_preference_dataset"] = Entry(
    base=lambda: dict(pref=pref_matrix(), coverage=REFXK, num_samples=10, seed=0),
    kinds=dict(pref="array", coverage="prob", num_samples="size", seed="seed",
               context_probs="opt_prob"),
    valid_range="num_samples ≥ 1 within memory",
    invalid=dict(num_samples=(0,)),
)


def _triples():
    return dict(context=np.array([0, 1, 0]), winner=np.array([0, 1, 2]), loser=np.array([1, 2, 0]))


R["online_gpo"] = Entry(
    base=lambda: dict(ref=REFXK, label_pref=pref_matrix(), beta=0.5, steps=5, batch_size=4,
                      num_checkpoints=2),
    kinds=dict(ref="prob", label_pref="array", beta="real", kind="choice", steps="size",
               batch_size="size", learning_rate="real", seed="seed", exact="bool",
               golden_pref="opt_array", context_probs="opt_prob", num_checkpoints="size"),
    valid_range="β > 0; steps, batch_size ≥ 1 with steps·batch_size within the work budget",
    extremes=({"beta": 1e-4}, {"beta": 1e4, "learning_rate": 4e-8}, {"exact": True}, {"learning_rate": 16.0}),
    invalid=dict(beta=(0.0, -1.0), steps=(0,), batch_size=(0,), learning_rate=(0.0, -1.0)),
)
R["offline_gpo"] = Entry(
    base=lambda: dict(ref=REFXK, **_triples(), beta=0.5, steps=5, batch_size=2, num_checkpoints=2),
    kinds=dict(ref="prob", context="array", winner="array", loser="array", beta="real",
               kind="choice", steps="size", batch_size="size", learning_rate="real",
               order="choice", seed="seed", golden_pref="opt_array", context_probs="opt_prob",
               num_checkpoints="size"),
    valid_range="β > 0; steps, batch_size ≥ 1 with steps·batch_size within the work budget",
    # learning_rate = 16 at β = 0.5: learning_rate·β² = 4, the documented stability limit
    extremes=({"beta": 1e-4}, {"beta": 1e4, "learning_rate": 4e-8}, {"learning_rate": 16.0}),
    invalid=dict(beta=(0.0, -1.0), steps=(0,), batch_size=(0,), winner=(np.array([0, 1, 7]),)),
)
R["fit_proxy_preference"] = Entry(
    base=lambda: _triples() | dict(num_contexts=2, num_responses=3),
    kinds=dict(context="array", winner="array", loser="array", num_contexts="size",
               num_responses="size", l2="real"),
    valid_range="l2 > 0 (down to 1e-300: minimum-norm Newton steps); indices in range",
    extremes=({"l2": 1e-300},),
    invalid=dict(l2=(-1.0, 0.0), num_contexts=(0,), winner=(np.array([0, 1, 7]),)),
)
R["kl_win_rate_frontier"] = Entry(
    base=lambda: dict(ref=REFXK, golden_pref=pref_matrix(), betas=np.array([0.5]), num_samples=20,
                      steps=3, batch_size=4, ablations=False),
    kinds=dict(ref="prob", golden_pref="array", betas="array", num_samples="size",
               coverage="opt_prob", steps="size", batch_size="size", learning_rate="real",
               l2="real", ablations="bool", seed="seed"),
    valid_range="betas > 0; l2 > 0 (down to 1e-300); sizes within the work budget",
    extremes=({"l2": 1e-300}, {"ablations": True}),
    invalid=dict(betas=(np.array([-1.0]),), l2=(-1.0, 0.0), steps=(0,)),
)


def _agro_base():
    return dict(logits=np.zeros(3), reward=np.array([1.0, 0.0, 0.5]), ref=K3, beta=0.5)


_agro_kinds = dict(logits="array", reward="array", ref="prob", beta="real")
_agro_extremes = (
    {"beta": 1e-6},
    {"beta": 1e6},
    {"logits": np.array([0.0, -700.0, 700.0])},
    {"ref": np.array([1 - 2e-12, 1e-12, 1e-12])},
)
R["agro_optimal_policy"] = Entry(
    base=lambda: (lambda b: dict(reward=b["reward"], ref=b["ref"], beta=b["beta"]))(_agro_base()),
    kinds=dict(reward="array", ref="prob", beta="real"),
    valid_range="reward finite; ref full support; β > 0 (down to 1e-6)",
    extremes=({"beta": 1e-6}, {"beta": 1e6}, {"reward": np.array([1e300, -1e300, 0.0])}),
    invalid=dict(beta=(0.0, -1.0)),
)
R["regularized_reward"] = Entry(
    base=_agro_base, kinds=_agro_kinds, valid_range="β > 0; ref full support",
    extremes=_agro_extremes, invalid=dict(beta=(0.0, -1.0)),
)
for _n in ("agro_gradient", "naive_pg_gradient"):
    R[_n] = Entry(
        base=lambda: _agro_base() | dict(samples=np.array([0, 1, 2])),
        kinds=_agro_kinds | dict(samples="array"),
        valid_range="β > 0; samples [n ≥ 2] indices in [0, K)",
        extremes=_agro_extremes,
        invalid=dict(beta=(0.0, -1.0), samples=(np.array([0, 3]), np.array([0.5, 1.0]), np.array([0]))),
    )
for _n in ("agro_expected_gradient", "naive_pg_expected_gradient", "pairwise_consistency_loss"):
    R[_n] = Entry(
        base=lambda: _agro_base() | dict(sampling=K3),
        kinds=_agro_kinds | dict(sampling="prob"),
        valid_range="β > 0 (1e-6 … 1e6); sampling a distribution",
        extremes=_agro_extremes,
        invalid=dict(beta=(0.0, -1.0)),
    )
R["train_agro"] = Entry(
    base=lambda: dict(reward=np.array([1.0, 0.0, 0.5]), ref=K3, beta=0.5, iterations=5, checkpoints=2),
    kinds=dict(reward="array", ref="prob", beta="real", sampling="choice", estimator="choice",
               iterations="size", learning_rate="real", batch_size="opt_size",
               init_logits="opt_array", sampling_distribution="opt_prob", replay_window="size",
               mixture_weight="real", checkpoints="size", seed="seed"),
    valid_range="β > 0 (1e-6 … 1e6 tested); learning_rate > 0 with learning_rate·β ≤ 2; "
    "iterations·batch_size within the work budget",
    extremes=({"beta": 1e-6}, {"beta": 1e6, "learning_rate": 1e-6}, {"beta": 1e-6, "learning_rate": 1e6},
              {"batch_size": 2}, {"beta": 1e6, "learning_rate": 2e-6, "batch_size": 4},
              {"sampling": "fixed", "sampling_distribution": K3}),
    invalid=dict(beta=(0.0, -1.0), iterations=(0,), learning_rate=(0.0, -1.0, 1e6),
                 mixture_weight=(-0.1, 1.5)),
)
_objectives = ("pass_at_k", "majority_vote", "mean")
R["leave_one_out_advantages"] = Entry(
    base=lambda: dict(rewards=np.array([1.0, 0.0, 0.0])),
    kinds=dict(rewards="array", objective="choice", answers="opt_array", centered="bool"),
    valid_range="rewards [k ≥ 1] finite",
    extremes=({"rewards": np.array([1e300, -1e300, 0.0]), "objective": "pass_at_k"},
              {"rewards": np.array([1.0, 0.0, 1.0]), "objective": "majority_vote",
               "answers": np.array([3, 1, 3])}),
)
R["k_sample_objective"] = Entry(
    base=lambda: dict(rewards=np.array([1.0, 0.0]), objective="pass_at_k"),
    kinds=dict(rewards="array", objective="choice", answers="opt_array"),
    valid_range="rewards [k ≥ 0] finite",
)
R["k_sample_gradient"] = Entry(
    base=lambda: dict(logits=np.zeros(3), samples=np.array([0, 2]), response_reward=np.array([1.0, 0.0, 0.0]),
                      objective="pass_at_k"),
    kinds=dict(logits="array", samples="array", response_reward="array", objective="choice",
               response_answer="opt_array", centered="bool"),
    valid_range="samples indices in [0, K)",
    extremes=({"logits": np.array([0.0, -700.0, 700.0])},),
    invalid=dict(samples=(np.array([0, 5]),)),
)
R["objective_value"] = Entry(
    base=lambda: dict(probs=K3, response_reward=np.array([1.0, 0.0, 0.0]), objective="pass_at_k", k=2),
    kinds=dict(probs="prob", response_reward="array", objective="choice", k="int",
               response_answer="opt_array"),
    valid_range="k ≥ 1 (any k for mean/pass@k: closed forms; majority vote enumerates "
    "C(k + A − 1, A − 1) answer counts, at most 2·10⁶)",
    extremes=({"k": 64}, {"k": 2**62}, {"probs": np.array([1.0, 0.0, 0.0])},
              {"objective": "majority_vote", "response_answer": np.array([0, 1, 2]), "k": 5}),
    invalid=dict(k=(0,)),
)
R["objective_gradient"] = Entry(
    base=lambda: dict(logits=np.zeros(3), response_reward=np.array([1.0, 0.0, 0.0]), objective="pass_at_k", k=2),
    kinds=dict(logits="array", response_reward="array", objective="choice", k="int",
               response_answer="opt_array"),
    valid_range="k ≥ 1 (majority vote: C(k + A − 1, A − 1) ≤ 2·10⁶ answer counts)",
    extremes=({"logits": np.array([0.0, -700.0, 700.0])}, {"k": 2**62}),
    invalid=dict(k=(0,)),
)
R["train_k_sample"] = Entry(
    base=lambda: dict(init_logits=np.zeros(3), response_reward=np.array([1.0, 0.0, 0.0]),
                      objective="pass_at_k", k=2, iterations=5, checkpoints=2, eval_ks=(1, 2)),
    kinds=dict(init_logits="array", response_reward="array", objective="choice", k="int",
               response_answer="opt_array", iterations="size", learning_rate="real",
               sampled="bool", centered="bool", checkpoints="size", seed="seed"),
    valid_range="k ≥ 1; learning_rate > 0; iterations within the work budget",
    extremes=({"learning_rate": 1e6}, {"sampled": True}),
    invalid=dict(k=(0,), iterations=(0,), learning_rate=(0.0, -1.0)),
)
_cot = dict(cot_probs=K3, answer_likelihood=np.array([0.5, 0.1, 0.9]))
for _n in ("jensen_bound", "log_evidence", "cot_posterior"):
    R[_n] = Entry(
        base=lambda: dict(_cot),
        kinds=dict(cot_probs="prob", answer_likelihood="array"),
        valid_range="cot_probs [C] distribution; answer_likelihood [C] in [0, 1] with some mass",
        extremes=({"answer_likelihood": np.array([1e-300, 1e-300, 1e-300])},),
        invalid=dict(answer_likelihood=(np.array([1.5, 0.1, 0.2]),)),
    )
R["multi_sample_bound"] = Entry(
    base=lambda: dict(_cot) | {"n": 2},
    kinds=dict(cot_probs="prob", answer_likelihood="array", n="size"),
    valid_range="n ≥ 1 (C^n enumeration within the budget)",
    extremes=({"answer_likelihood": np.array([1e-300, 1e-300, 1e-300])},),
    invalid=dict(n=(0,)),
)
_jepo_base = dict(cot_logits=np.zeros(3), answer_logits=np.zeros((3, 2)), target=1)
R["jepo_gradient"] = Entry(
    base=lambda: dict(_jepo_base) | {"samples": np.array([0, 2])},
    kinds=dict(cot_logits="array", answer_logits="array", target="int", samples="array",
               bound="choice"),
    valid_range="target in [0, A); samples indices in [0, C)",
    extremes=({"answer_logits": np.array([[0.0, -700.0]] * 3)},),
    invalid=dict(target=(-1, 5), samples=(np.array([0, 9]),)),
)
R["jepo_expected_gradient"] = Entry(
    base=lambda: dict(_jepo_base) | {"n": 2},
    kinds=dict(cot_logits="array", answer_logits="array", target="int", n="int", bound="choice"),
    valid_range="target in [0, A); n ≥ 1 (bound='multi': C(n + C − 1, C − 1) ≤ 2·10⁶ count vectors)",
    extremes=({"answer_logits": np.array([[0.0, -700.0]] * 3)}, {"n": 2**62},
              {"n": 5, "bound": "multi"}),
    invalid=dict(target=(-1, 5), n=(0,)),
)
R["rl_gradient"] = Entry(
    base=lambda: dict(_jepo_base) | {"cots": np.array([0, 2])},
    kinds=dict(cot_logits="array", answer_logits="array", target="int", cots="array",
               answers="opt_array"),
    valid_range="target in [0, A); cots [n ≥ 2] indices",
    invalid=dict(target=(-1, 5), cots=(np.array([0, 9]),)),
)
R["train_cot"] = Entry(
    base=lambda: dict(init_cot_logits=np.zeros(3), init_answer_logits=np.zeros((3, 2)), target=1,
                      n=2, iterations=5, checkpoints=2),
    kinds=dict(init_cot_logits="array", init_answer_logits="array", target="int", method="choice",
               n="size", iterations="size", learning_rate="real", sampled="bool",
               checkpoints="size", seed="seed"),
    valid_range="target in [0, A); learning_rate > 0; iterations within the work budget",
    extremes=({"learning_rate": 1e6}, {"sampled": True}),
    invalid=dict(target=(-1,), iterations=(0,), learning_rate=(0.0, -1.0)),
)

# --- envs --------------------------------------------------------------------------------------

R["PreferenceGame"] = Entry(
    base=lambda: dict(pref=rps().pref, ref=K3),
    kinds=dict(pref="array", ref="prob", context_weights="opt_prob", name="free"),
    valid_range="pref [K, K] or [X, K, K] with P + Pᵀ = 1; ref full support",
    extremes=({"ref": np.array([1 - 2e-12, 1e-12, 1e-12])},),
    invalid=dict(ref=(np.array([1.0, 0.0, 0.0]),), pref=(np.full((3, 3), 0.7),)),
)
R["dice"] = Entry(base=dict, kinds=dict(ref="opt_prob"), valid_range="ref full support (default uniform)")
R["rock_paper_scissors"] = Entry(base=dict, kinds=dict(ref="opt_prob"), valid_range="ref full support")
R["three_type_cycle"] = Entry(
    base=lambda: dict(eps=0.1),
    kinds=dict(eps="real", ref="opt_prob"),
    valid_range="ε in [−2/3, 1/3]",
    invalid=dict(eps=(-0.7, 0.5)),
)
R["bradley_terry"] = Entry(
    base=lambda: dict(rewards=np.array([0.0, 1.0, 2.0])),
    kinds=dict(rewards="array", ref="opt_prob"),
    valid_range="rewards finite",
    extremes=({"rewards": np.array([-1e300, 0.0, 1e300])},),
)
for _n in ("random_game",):
    R[_n] = Entry(
        base=lambda: dict(K=3),
        kinds=dict(K="size", seed="seed", kind="choice", ref="choice"),
        valid_range="K ≥ 1 within memory",
        invalid=dict(K=(0, -1)),
    )
R["random_contextual_game"] = Entry(
    base=lambda: dict(X=2, K=3),
    kinds=dict(X="size", K="size", seed="seed", kind="choice", ref="choice"),
    valid_range="X ≥ 1, K ≥ 1 with X·K² within memory",
    invalid=dict(K=(0,), X=(0,)),
)
R["DialogueGame"] = Entry(
    base=lambda: {f.name: getattr(dialogue(), f.name) for f in dataclasses.fields(dialogue())},
    kinds=dict(context_probs="prob", layer_starts="array", state_context="array",
               num_actions="int", reference="prob", transition_starts="array",
               transition_next="array", transition_probs="array", final_starts="array",
               preference_values="array", final_reward="opt_array", name="free"),
    valid_range="a consistent layered game (see the class docstring)",
    invalid=dict(num_actions=(0,)),
)
R["random_layered_game"] = Entry(
    base=lambda: dict(horizon=2, states_per_layer=2, num_actions=2),
    kinds=dict(num_contexts="size", horizon="size", states_per_layer="size", num_actions="size",
               branching="size", final_states="opt_size", reference="choice", with_reward="bool",
               seed="seed"),
    valid_range="sizes ≥ 1 with states·actions·branching within memory",
    invalid=dict(horizon=(0,), num_actions=(0,)),
)
R["tree_game"] = Entry(
    base=lambda: dict(horizon=2, num_actions=2),
    kinds=dict(num_contexts="size", horizon="size", num_actions="size", reference="choice",
               seed="seed"),
    valid_range="num_contexts, horizon, num_actions ≥ 1; num_actions**horizon ≤ 4096",
    invalid=dict(horizon=(0, -1), num_actions=(0,), num_contexts=(0,)),
)
R["education_dialogue"] = Entry(
    base=lambda: dict(horizon=2),
    kinds=dict(horizon="size", num_topics="size", match_prob="real", mismatch_prob="real",
               check_prob="real", repeat_penalty="real", sharpness="real", cycle_weight="real",
               seed="seed"),
    valid_range="horizon ≥ 1; probabilities in [0, 1]",
    invalid=dict(horizon=(0,), match_prob=(1.5, -0.1)),
)
R["car_dealer"] = Entry(
    base=lambda: dict(horizon=2),
    kinds=dict(horizon="size", prices="array", num_segments="size", leave_prob="real", seed="seed"),
    valid_range="horizon ≥ 1; leave_prob in [0, 1]; prices increasing",
    invalid=dict(horizon=(0,), leave_prob=(1.5, -0.1)),
)
R["TabularMDP"] = Entry(
    base=lambda: dict(P=mdp().P, reward=mdp().reward, gamma=0.9),
    kinds=dict(P="prob", reward="array", gamma="real", initial="opt_prob", reward_probs="free"),
    valid_range="P [S, A, S] row-stochastic; γ in [0, 1)",
    invalid=dict(gamma=(1.0, -0.1)),
)
R["MarkovRewardProcess"] = Entry(
    base=lambda: dict(P=mrp().P, reward=mrp().reward, gamma=0.9),
    kinds=dict(P="prob", reward="array", gamma="real", initial="opt_prob"),
    valid_range="P [S, S] row-stochastic; γ in [0, 1)",
    invalid=dict(gamma=(1.0, -0.1)),
)
R["garnet"] = Entry(
    base=lambda: dict(n_states=3, n_actions=2, branching=2, seed=0),
    kinds=dict(n_states="size", n_actions="size", branching="size", seed="seed", gamma="real",
               reward_kind="choice", reward_scale="real"),
    valid_range="1 ≤ branching ≤ n_states; γ in [0, 1); S²A within memory",
    invalid=dict(branching=(5, 0), gamma=(1.0,)),
)
R["chain_mdp"] = Entry(
    base=lambda: dict(n_states=3),
    kinds=dict(n_states="size", gamma="real", slip="real", reward="real"),
    valid_range="n_states ≥ 2; γ in [0, 1); slip in [0, 1]",
    invalid=dict(n_states=(0,), slip=(1.5,), gamma=(1.0,)),
)
R["two_state_mdp"] = Entry(
    base=dict,
    kinds=dict(gamma="real", stay="real", rewards="array"),
    valid_range="γ in [0, 1); stay in [0, 1]",
    invalid=dict(stay=(1.5,), gamma=(1.0,)),
)
R["check_policy"] = Entry(
    base=lambda: dict(mdp=mdp(), pi=mdp_pi()),
    kinds=dict(mdp="object", pi="prob", name="free"),
    valid_range="pi [S, A] row-stochastic",
)
R["uniform_policy"] = Entry(base=lambda: dict(mdp=mdp()), kinds=dict(mdp="object"), valid_range="a TabularMDP")
R["random_policy"] = Entry(
    base=lambda: dict(mdp=mdp(), seed=0),
    kinds=dict(mdp="object", seed="seed", concentration="real"),
    valid_range="concentration > 0",
    extremes=({"concentration": 1e-3}, {"concentration": 1e6}),
    invalid=dict(concentration=(0.0, -1.0)),
)
R["greedy_policy"] = Entry(
    base=lambda: dict(q=np.array([[1.0, 0.0], [0.0, 1.0]])),
    kinds=dict(q="array"),
    valid_range="q [S, A] finite",
)
R["epsilon_greedy_policy"] = Entry(
    base=lambda: dict(pi=np.array([[1.0, 0.0], [0.0, 1.0]]), epsilon=0.1),
    kinds=dict(pi="prob", epsilon="real"),
    valid_range="ε in [0, 1]",
    invalid=dict(epsilon=(-0.1, 1.5)),
)
for _n, _extra in (("chain", dict(forward="real")), ("two_state", dict(stay="real"))):
    R[_n] = Entry(
        base=dict,
        kinds=dict(gamma="real") | _extra | ({"n_states": "size"} if _n == "chain" else {}),
        valid_range="γ in [0, 1); probabilities in [0, 1]",
        invalid=dict(gamma=(1.0, -0.1)),
    )
for _n in ("low_random", "high_random"):
    R[_n] = Entry(
        base=lambda: dict(n_states=3),
        kinds=dict(n_states="size", gamma="real", seed="seed"),
        valid_range="n_states ≥ 1 (S² within memory); γ in [0, 1)",
        invalid=dict(n_states=(0,), gamma=(1.0,)),
    )
R["random_mrp"] = Entry(
    base=lambda: dict(n_states=3, concentration=1.0),
    kinds=dict(n_states="size", concentration="real", gamma="real", seed="seed"),
    valid_range="concentration > 0; γ in [0, 1)",
    invalid=dict(n_states=(0,), concentration=(0.0, -1.0), gamma=(1.0,)),
)
for _n in ("global_support", "environment_support"):
    R[_n] = Entry(
        base=lambda: dict(mrp=mrp(), m=11),
        kinds=dict(mrp="object", m="size"),
        valid_range="m ≥ 2 within memory; returns of finite span",
        extremes=({"mrp": Derived(lambda b: mrp_huge_rewards(), "|r|=1e150")},),
        invalid=dict(m=(1, 0)),
    )
R["return_bounds"] = Entry(
    base=lambda: dict(mrp=mrp()),
    kinds=dict(mrp="object", tol="real"),
    valid_range="tol > 0; returns of finite span",
    extremes=({"mrp": Derived(lambda b: mrp_huge_rewards(), "|r|=1e150")},),
    invalid=dict(tol=(0.0, -1.0)),
)


def _dcfp_env(name, **kwargs):
    return envs.DCFP_ENVIRONMENTS[name](**kwargs)


R["DCFP_ENVIRONMENTS"] = Entry(
    base=lambda: dict(name="chain"),
    kinds=dict(),
    valid_range="a dict name -> constructor; every constructor builds a valid MRP",
    extremes=tuple({"name": n} for n in ("low_random", "high_random", "two_state")),
    call=_dcfp_env,
)

# --------------------------------------------------------------------------------------------
# documented ranges of every numeric argument (the docstrings' "Valid range" paragraphs say the
# same). Probes keep counts small so that every drawn call stays milliseconds.
# --------------------------------------------------------------------------------------------

POS = span("(0, inf)")  # any positive real
NONNEG = span("[0, inf)")
ANY_REAL = span("[-inf, inf]")
UNIT = span("[0, 1]", scale="linear")
UNIT_OPEN_HIGH = span("[0, 1)", scale="linear")  # discounts
UNIT_OPEN_LOW = span("(0, 1]", scale="linear")
TAU_SOLVER = span("[1e-4, inf)")  # NLHF solvers: finite down to τ = 1e-4 (the regime)
TAU_ONE_SHOT = span("[1e-6, inf)")
ALPHA = span("[1e-4, inf)")  # MTPO regularisation (down to 1e-4)
ALPHA_SMALL = span("[1e-6, inf)")
BETA = span("[1e-6, 1e6]")  # AGRO's documented β range
TOL = span("(0, inf)", probe=(1e-14, 1.0))  # tolerances: tiny ones only cost iterations
ITERS = span("[1, inf) int", probe=(1, 40))  # iteration counts: [1, work budget]
SAMPLES = span("[1, inf) int", probe=(1, 40))  # sample/episode/pair counts: [1, work budget]
CHECKPOINTS = span("[2, inf) int", probe=(2, 8))
CHECKPOINT_EVERY = span("[1, inf) int", probe=(1, 40))
STATES = span("[1, inf) int", probe=(1, 6))  # sizes of generated problems: [1, memory budget]
ATOMS = span("[2, inf) int", probe=(2, 64))
# truncation horizons of Q(λ) operators: [1, work budget]; the work grows like (S·A)^horizon, so
# the probe stays at horizons the tiny chain MDP can afford
HORIZON = span("[1, inf) int", probe=(1, 6))


def _le(a, b, bound):
    return Joint((a, b), f"{a}·{b} ≤ {bound:g}", lambda kw: kw.get(a) is None or kw.get(b) is None
                 or kw[a] * kw[b] <= bound)


def _ordered(a, b, strict=True):
    return Joint((a, b), f"{a} {'<' if strict else '≤'} {b}",
                 lambda kw: kw.get(a) is None or kw.get(b) is None
                 or (kw[a] < kw[b] if strict else kw[a] <= kw[b]))


_checkpoints_le_iterations = Joint(
    ("checkpoints", "iterations"), "checkpoints ≤ iterations + 1 (the checkpoint iterations are distinct)",
    lambda kw: kw.get("checkpoint_every") is not None or kw.get("checkpoints") is None
    or kw["checkpoints"] <= kw["iterations"] + 1,
)
def _gpo_loss_is_finite(kw):
    with np.errstate(over="ignore"):
        z = kw["beta"] * np.asarray(kw["margin"], dtype=np.float64)
    if not np.all(np.isfinite(z)):
        return False
    if kw.get("kind") in ("squared", "truncated_quadratic", "ipo") and np.max(np.abs(z)) > 1e154:
        return False
    return not (kw.get("kind") == "exponential" and np.min(z) < -709)


_gpo_loss_finite = Joint(
    ("beta", "margin"), "the loss of β·margin finite (|β·margin| ≲ 1e154 quadratic, ≥ −709 exponential)",
    _gpo_loss_is_finite,
)
_majority_vote_enumerable = Joint(
    ("k",), "majority vote: C(k + A − 1, A − 1) ≤ 2·10⁶ answer counts (A ≤ K answers)",
    lambda kw: kw.get("objective") != "majority_vote" or math.comb(
        kw["k"] + len(kw.get("probs", kw.get("logits"))) - 1, len(kw.get("probs", kw.get("logits"))) - 1)
    <= 2_000_000,
)
_lr_beta_squared = Joint(
    ("learning_rate", "beta"), "learning_rate·β² ≤ 4 (gradient descent on f(β·margin) is stable)",
    lambda kw: kw["learning_rate"] * kw["beta"] ** 2 <= 4.0,
)
_eta_needs_constant = Joint(
    ("eta",), "eta is given only with schedule='constant' (the theorem schedule sets η_t itself)",
    lambda kw: kw.get("eta") is None or kw.get("schedule") == "constant",
)
_nlhf_solver = dict(tau=TAU_SOLVER, iterations=ITERS, checkpoints=CHECKPOINTS, checkpoint_every=CHECKPOINT_EVERY)
_mtpo_solver = dict(alpha=ALPHA, iterations=ITERS, eta=POS, n_samples=SAMPLES, checkpoints=CHECKPOINTS,
                    checkpoint_every=CHECKPOINT_EVERY)

RANGES: dict[str, dict[str, Range]] = {
    "SolverResult": dict(wall_time_s=NONNEG, compile_time_s=NONNEG),
    "loglog_slope": dict(floor=ANY_REAL, min_points=span("[2, inf) int", probe=(2, 5))),
    "regularized_nash_equilibrium": dict(tau=TAU_ONE_SHOT, max_iter=span("[40, inf) int", probe=(40, 500))),
    "exploitability": dict(tau=NONNEG),
    "fixed_point_residual": dict(tau=POS),
    "regularized_preference": dict(tau=NONNEG),
    "nash_md": _nlhf_solver | dict(eta=POS, n_samples=SAMPLES),
    "self_play_md": _nlhf_solver | dict(eta=POS, n_samples=SAMPLES),
    "nash_mirror_prox": _nlhf_solver | dict(eta=POS),
    "online_mirror_descent": _nlhf_solver | dict(eta=POS),
    "fictitious_play": dict(_nlhf_solver),
    "nash_md_pg": _nlhf_solver | dict(learning_rate=POS, mixture=UNIT, n_samples=SAMPLES),
    "best_response_to_reference": dict(tau=TAU_ONE_SHOT),
    # τ = 0 (unregularised, an extreme above) or τ ≥ 1e-6: the kl metric needs π*_τ, which the
    # Newton oracle resolves in float64 from τ = 1e-6 on
    "rlhf_bradley_terry": dict(tau=TAU_ONE_SHOT, n_pairs=SAMPLES),
    "nash_md_step": dict(eta=POS, tau=POS),
    "self_play_md_step": dict(eta=POS, tau=POS),
    "nash_mirror_prox_step": dict(eta=POS, tau=POS),
    "theorem_step_sizes": dict(tau=span("[1e-308, inf)"), iterations=span("[1, inf) int", probe=(1, 1000))),
    "preference_q_values": dict(alpha=NONNEG),
    "multiturn_exploitability": dict(alpha=ALPHA),
    "multiturn_regularized_nash": dict(alpha=ALPHA, tol=TOL, max_iterations=span("[1, inf) int", probe=(1, 2000)),
                                       damping=UNIT_OPEN_LOW),
    "mtpo": dict(_mtpo_solver),
    "mtpo_tau": dict(_mtpo_solver),
    "multiturn_preference": dict(alpha=NONNEG),
    "soft_best_response": dict(alpha=ALPHA_SMALL),
    "mtpo_theorem_bound": dict(alpha=ALPHA),
    "reward_rl": dict(alpha=ALPHA_SMALL),
    "multiturn_rlhf": dict(alpha=ALPHA, n_pairs=SAMPLES, l2=span("[1e-300, inf)")),
    "single_turn_rlhf": dict(alpha=ALPHA, n_pairs=SAMPLES, n_rollouts=SAMPLES),
    "single_turn_nash_md": dict(alpha=ALPHA, n_pairs=SAMPLES, n_rollouts=SAMPLES),
    "learned_preference_game": dict(n_pairs=SAMPLES, prior=POS),
    "CategoricalSupport": dict(v_min=ANY_REAL, v_max=ANY_REAL, m=ATOMS),
    "pushforward": dict(gamma=UNIT),
    "distributional_operator": dict(lam=UNIT, horizon=HORIZON, tol=TOL,
                                    max_inner=span("[1, inf) int", probe=(1, 1000))),
    "contraction_modulus": dict(lam=UNIT, horizon=HORIZON,
                                n_probes=span("[1, inf) int", probe=(1, 4)), iterations=span("[2, inf) int", probe=(2, 5))),
    "q_lambda_contraction_bound": dict(lam=UNIT, p=span("[1, 1e300]")),
    "q_lambda_bound_from_mismatch": dict(gamma=UNIT_OPEN_HIGH, lam=UNIT, eps=span("[0, 2]", scale="linear"),
                                         p=span("[1, 1e300]")),
    "iterate_distributional_operator": dict(lam=UNIT, horizon=HORIZON, tol=TOL,
                                            max_iterations=ITERS),
    "trace_coefficients": dict(lam=UNIT),
    "value_mode_rate": dict(lam=UNIT, iterations=span("[1, inf) int", probe=(1, 10))),
    "categorical_evaluation_fixed_point": dict(tol=TOL, max_iterations=span("[1, inf) int", probe=(1, 1000))),
    "monte_carlo_returns": dict(n_samples=SAMPLES, horizon=span("[1, inf) int", probe=(1, 40))),
    "sampled_distributional_target": dict(lam=UNIT, gamma=UNIT_OPEN_HIGH),
    "distributional_td_learning": dict(lam=UNIT, n_steps=span("[1, inf) int", probe=(1, 5)), n_updates=ITERS,
                                       n_checkpoints=span("[1, inf) int", probe=(1, 5)),
                                       step_exponent=UNIT),
    "sample_empirical_model": dict(n_samples=SAMPLES),
    "categorical_dp": dict(iterations=ITERS, tol=TOL),
    "quantile_dp": dict(m=span("[2, inf) int", probe=(2, 64)), iterations=ITERS, tol=TOL),
    "monte_carlo_return_distribution": dict(n_episodes=SAMPLES, truncation_tol=span("(0, 1)", probe=(1e-12, 0.5))),
    "sample_stochastic_cdf_bellman": dict(n=span("[1, inf) int", probe=(1, 10)),
                                          truncation_tol=span("(0, 1)", probe=(1e-12, 0.5))),
    "SparseMarkovRewardProcess": dict(gamma=UNIT_OPEN_HIGH),
    "high_resolution_reference": dict(m_fine=span("[2, inf) int", probe=(2, 201))),
    "HighResolutionReference": dict(w1_bias_bound=NONNEG),
    "gpo_loss": dict(beta=POS),
    "gpo_loss_derivative": dict(beta=POS),
    "train_gpo": dict(beta=span("[1e-4, 1e4]"), steps=ITERS, learning_rate=POS,
                      num_checkpoints=CHECKPOINTS),
    "solve_gpo": dict(beta=span("[1e-4, 1e4]"), max_iterations=span("[1, inf) int", probe=(1, 50)),
                      tolerance=TOL),
    "sample_preference_dataset": dict(num_samples=span("[1, inf) int", probe=(1, 1000))),
    "online_gpo": dict(beta=span("[1e-4, 1e4]"), steps=ITERS, batch_size=span("[1, inf) int", probe=(1, 16)),
                       learning_rate=span("(0, 1e3]"), num_checkpoints=CHECKPOINTS),
    "offline_gpo": dict(beta=span("[1e-4, 1e4]"), steps=ITERS, batch_size=span("[1, inf) int", probe=(1, 16)),
                        learning_rate=span("(0, 1e3]"), num_checkpoints=CHECKPOINTS),
    "fit_proxy_preference": dict(num_contexts=span("[2, inf) int", probe=(2, 6)),
                                 num_responses=span("[3, inf) int", probe=(3, 6)), l2=span("[1e-300, inf)")),
    "kl_win_rate_frontier": dict(num_samples=span("[1, inf) int", probe=(1, 40)), steps=span("[1, inf) int", probe=(1, 5)),
                                 batch_size=span("[1, inf) int", probe=(1, 8)), learning_rate=span("(0, 1e3]"),
                                 l2=span("[1e-300, inf)")),
    "agro_optimal_policy": dict(beta=BETA),
    "regularized_reward": dict(beta=BETA),
    "agro_gradient": dict(beta=BETA),
    "naive_pg_gradient": dict(beta=BETA),
    "agro_expected_gradient": dict(beta=BETA),
    "naive_pg_expected_gradient": dict(beta=BETA),
    "pairwise_consistency_loss": dict(beta=BETA),
    "train_agro": dict(beta=BETA, iterations=ITERS, learning_rate=POS, batch_size=span("[2, inf) int", probe=(2, 16)),
                       replay_window=span("[1, inf) int", probe=(1, 60)), mixture_weight=UNIT,
                       checkpoints=span("[1, inf) int", probe=(1, 6))),
    "objective_value": dict(k=span("[1, inf) int", probe=(1, 2**62))),
    "objective_gradient": dict(k=span("[1, inf) int", probe=(1, 2**62))),
    "train_k_sample": dict(k=span("[1, inf) int", probe=(1, 64)), iterations=ITERS, learning_rate=POS,
                           checkpoints=span("[1, inf) int", probe=(1, 6))),
    "multi_sample_bound": dict(n=span("[1, inf) int", probe=(1, 8))),
    "jepo_gradient": dict(target=span("[0, 1] int", scale="linear")),
    "jepo_expected_gradient": dict(target=span("[0, 1] int", scale="linear"), n=span("[1, inf) int", probe=(1, 2**62))),
    "rl_gradient": dict(target=span("[0, 1] int", scale="linear")),
    "train_cot": dict(target=span("[0, 1] int", scale="linear"), n=span("[1, inf) int", probe=(1, 8)), iterations=ITERS,
                      learning_rate=POS, checkpoints=span("[1, inf) int", probe=(1, 6))),
    "three_type_cycle": dict(eps=span("[-0.6666666666666666, 0.3333333333333333]", scale="linear")),
    "random_game": dict(K=span("[1, inf) int", probe=(1, 50))),
    "random_contextual_game": dict(X=span("[1, inf) int", probe=(1, 8)), K=span("[1, inf) int", probe=(1, 20))),
    "DialogueGame": dict(num_actions=span("[2, 2] int", scale="linear")),
    "random_layered_game": dict(num_contexts=STATES, horizon=STATES, states_per_layer=STATES, num_actions=STATES,
                                branching=STATES, final_states=STATES),
    "tree_game": dict(num_contexts=STATES, horizon=STATES, num_actions=STATES),
    "education_dialogue": dict(horizon=span("[1, 3] int", scale="linear"), num_topics=STATES, match_prob=UNIT,
                               mismatch_prob=UNIT, check_prob=UNIT, repeat_penalty=UNIT, sharpness=NONNEG,
                               cycle_weight=UNIT),
    "car_dealer": dict(horizon=STATES, num_segments=STATES, leave_prob=UNIT),
    "TabularMDP": dict(gamma=UNIT_OPEN_HIGH),
    "MarkovRewardProcess": dict(gamma=UNIT_OPEN_HIGH),
    "garnet": dict(n_states=span("[2, inf) int", probe=(2, 20)), n_actions=STATES,
                   branching=span("[1, inf) int", probe=(1, 2)), gamma=UNIT_OPEN_HIGH, reward_scale=POS),
    "chain_mdp": dict(n_states=span("[2, inf) int", probe=(2, 20)), gamma=UNIT_OPEN_HIGH, slip=UNIT,
                      reward=ANY_REAL),
    "two_state_mdp": dict(gamma=UNIT_OPEN_HIGH, stay=UNIT),
    "random_policy": dict(concentration=POS),
    "epsilon_greedy_policy": dict(epsilon=UNIT),
    "chain": dict(gamma=UNIT_OPEN_HIGH, forward=UNIT_OPEN_LOW, n_states=span("[2, inf) int", probe=(2, 20))),
    "two_state": dict(gamma=UNIT_OPEN_HIGH, stay=UNIT),
    "low_random": dict(n_states=span("[1, inf) int", probe=(1, 20)), gamma=UNIT_OPEN_HIGH),
    "high_random": dict(n_states=span("[1, inf) int", probe=(1, 20)), gamma=UNIT_OPEN_HIGH),
    "random_mrp": dict(n_states=span("[1, inf) int", probe=(1, 20)), concentration=POS, gamma=UNIT_OPEN_HIGH),
    "global_support": dict(m=ATOMS),
    "environment_support": dict(m=ATOMS),
    "return_bounds": dict(tol=TOL),
}
JOINT: dict[str, tuple[Joint, ...]] = {
    "loglog_slope": (Joint(("min_points", "floor"), "at least min_points points with y > floor and x > 0",
                           lambda kw: np.sum((np.asarray(kw["y"]) > kw["floor"]) & (np.asarray(kw["x"]) > 0))
                           >= kw["min_points"]),),
    "nash_md": (_le("eta", "tau", 1.0), _eta_needs_constant),
    "self_play_md": (_le("eta", "tau", 1.0), _eta_needs_constant),
    "online_mirror_descent": (_le("eta", "tau", 1.0), _eta_needs_constant),
    "nash_md_step": (_le("eta", "tau", 1.0),),
    "self_play_md_step": (_le("eta", "tau", 1.0),),
    "mtpo": (_le("eta", "alpha", 1.0), _eta_needs_constant, _checkpoints_le_iterations),
    "mtpo_tau": (_le("eta", "alpha", 1.0), _eta_needs_constant, _checkpoints_le_iterations),
    "CategoricalSupport": (_ordered("v_min", "v_max"),
                           Joint(("v_min", "v_max"), "v_max − v_min finite",
                                 lambda kw: np.isfinite(kw["v_max"] - kw["v_min"]))),
    "train_agro": (_le("learning_rate", "beta", 2.0),),
    "objective_value": (_majority_vote_enumerable,),
    "objective_gradient": (_majority_vote_enumerable,),
    "jepo_expected_gradient": (Joint(
        ("n",), "bound='multi': C(n + C − 1, C − 1) ≤ 2·10⁶ count vectors",
        lambda kw: kw.get("bound") != "multi" or math.comb(kw["n"] + len(kw["cot_logits"]) - 1,
                                                           len(kw["cot_logits"]) - 1) <= 2_000_000),),
    "gpo_loss": (_gpo_loss_finite,),
    "gpo_loss_derivative": (_gpo_loss_finite,),
    # gradient descent on f(β·margin): curvature ∝ β², stable for learning_rate·β² ≤ 4 (divergence
    # measured from 8 on, exponential kind); a diverging run raises ValueError naming learning_rate
    "train_gpo": (_lr_beta_squared,),
    "online_gpo": (_lr_beta_squared,),
    "offline_gpo": (_lr_beta_squared,),
    "garnet": (_ordered("branching", "n_states", strict=False),),
    "tree_game": (Joint(("num_actions", "horizon"), "num_actions**horizon ≤ 4096",
                        lambda kw: kw["num_actions"] ** kw["horizon"] <= 4096),),
}
for _name, _ranges in RANGES.items():
    R[_name] = dataclasses.replace(R[_name], ranges=_ranges, joint=JOINT.get(_name, ()))

REGISTRY: dict[str, Entry] = R
