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

The property: no bad outcome. The default profile draws a modest number of cases per function
(the whole file stays well under a minute); ``HYPOTHESIS_PROFILE=thorough`` draws many more, and
``python tests/test_fuzz.py`` enumerates every case of every entry and prints the counts.
"""

from __future__ import annotations

import dataclasses
import math
import os
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
from fuzz_registry import REGISTRY, cases, function_of, resolve  # noqa: E402

# A call on the tiny registry problems takes milliseconds (after Numba's cached compile); anything
# over this limit is a hang (e.g. an absurd size that should have been refused up front).
CALL_LIMIT_S = float(os.environ.get("FUZZ_CALL_LIMIT_S", "20"))
BAD = ("nonfinite", "rejected_valid", "accepted_invalid", "unnamed_error", "foreign", "hang")
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


def run_case(name, entry, kind, arg, overrides):
    """Call one case; returns (outcome, detail)."""
    base = entry.base()
    kwargs = dict(base)
    for key, value in overrides.items():
        kwargs[key] = resolve(value, base)
    fn = function_of(name, entry)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT_S)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(**kwargs)
        error = None
    except _CallTimeout:
        return "hang", f"over {CALL_LIMIT_S} s"
    except Exception as exc:  # noqa: BLE001 - classified below
        error = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if time.perf_counter() - start > CALL_LIMIT_S:
        return "hang", f"took {time.perf_counter() - start:.1f} s"
    if error is not None:
        if type(error) is not ValueError and not (
            isinstance(error, ValueError) and type(error).__module__.startswith("fixpoint_rl")
        ):
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


# --------------------------------------------------------------------------------------------
# exhaustive run: python tests/test_fuzz.py [names...]
# --------------------------------------------------------------------------------------------


def _child(name, start):
    """Run the cases of one name from index ``start``; one JSON line per case, flushed."""
    import json

    global CALL_LIMIT_S
    entry = REGISTRY[name]
    limit, CALL_LIMIT_S = CALL_LIMIT_S, 600.0
    try:  # warm-up: the first call compiles (or loads cached) Numba kernels; not counted
        run_case(name, entry, "valid", None, {})
    finally:
        CALL_LIMIT_S = limit
    for index, (kind, arg, overrides) in enumerate(cases(name, entry)):
        if index < start:
            continue
        print(json.dumps({"index": index, "kind": kind, "case": describe_case(overrides)}), flush=True)
        outcome, detail = run_case(name, entry, kind, arg, overrides)
        print(json.dumps({"index": index, "outcome": outcome, "detail": detail}), flush=True)


def main(argv):
    """Every case of every entry, each name in a subprocess (a call stuck inside a Numba kernel,
    where SIGALRM cannot interrupt it, is killed after ``FUZZ_HARD_LIMIT_S`` and counted as a
    hang; the run then continues with the next case)."""
    import json
    import selectors
    import subprocess

    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]))
        return 0
    hard_limit = float(os.environ.get("FUZZ_HARD_LIMIT_S", "60"))
    names = argv or PUBLIC
    totals = Counter()
    per_function = Counter()
    start_time = time.perf_counter()
    for name in names:
        if name not in REGISTRY:
            totals["missing_entry"] += 1
            print(f"{name}: no registry entry", flush=True)
            continue
        n_cases = len(cases(name, REGISTRY[name]))
        index = 0
        while index < n_cases:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", name, str(index)],
                stdout=subprocess.PIPE, text=True, bufsize=1,
            )
            current, case, done, timed_out = index, None, set(), False
            selector = selectors.DefaultSelector()
            selector.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + hard_limit + 60  # first case: start-up and warm-up
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
                if "outcome" not in record:
                    current, case = record["index"], record["case"]
                    deadline = time.monotonic() + hard_limit
                    continue
                done.add(record["index"])
                outcome = record["outcome"]
                totals[outcome] += 1
                if outcome in BAD:
                    per_function[name] += 1
                    print(f"{outcome:16s} {name}({case}): {record['detail']}", flush=True)
            proc.wait()
            selector.close()
            if timed_out or current not in done:
                why = "hang" if timed_out else "foreign"
                totals[why] += 1
                per_function[name] += 1
                print(f"{why:16s} {name}({case}): process {'killed' if timed_out else 'died'}", flush=True)
                index = current + 1
            else:
                index = n_cases
    n_total = sum(totals.values())
    n_bad = sum(totals[b] for b in BAD)
    print(f"\n{n_total} cases over {len(names)} names in {time.perf_counter() - start_time:.1f} s")
    print("outcomes:", dict(sorted(totals.items())))
    print(f"bad outcomes: {n_bad} over {len(per_function)} functions")
    print("by function:", dict(per_function.most_common()))
    return 1 if n_bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
