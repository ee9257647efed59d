"""Foundation: packaging, import layering, public API, validation helpers, shared closed forms."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("tabular", "deep", "envs", "benchmarks", "tests", "paper_figs")
BARE = {"tabular", "deep", "envs", "benchmarks"}


def _python_files():
    for folder in SOURCE_DIRS:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_no_code_imports_the_bare_folder_names():
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in BARE:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert not offenders, "bare imports (use fixpoint_rl.<name>):\n" + "\n".join(offenders)


_LAYER_CHECK = r"""
import importlib, pkgutil, sys
package = importlib.import_module({package!r})
names = [{package!r}]
for info in pkgutil.walk_packages(package.__path__, {package!r} + "."):
    if any(info.name.rsplit(".", 1)[-1].startswith(p) for p in {exclude!r}):
        continue
    names.append(info.name)
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r}
             or any(m.startswith(p) for p in {forbidden_prefixes!r}))
print("\n".join(names))
assert not bad, f"{package} imported forbidden modules: {{bad}}"
"""


def _check_layer(package, forbidden, forbidden_prefixes=(), exclude=()):
    code = _LAYER_CHECK.format(
        package=package,
        forbidden=tuple(forbidden),
        forbidden_prefixes=tuple(forbidden_prefixes),
        exclude=tuple(exclude),
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def test_envs_specifications_import_only_numpy():
    # gymnasium environments live in envs/registration.py and envs/gym_*.py; all else is numpy.
    modules = _check_layer(
        "fixpoint_rl.envs",
        forbidden=("numba", "torch", "gymnasium", "scipy", "pandas", "matplotlib"),
        exclude=("registration", "gym_"),
    )
    assert "fixpoint_rl.envs.checks" in modules


def test_tabular_never_imports_torch_or_gymnasium():
    modules = _check_layer("fixpoint_rl.tabular", forbidden=("torch", "gymnasium"))
    assert "fixpoint_rl.tabular.core.mirror" in modules


def test_tabular_core_is_free_of_numba():
    _check_layer("fixpoint_rl.tabular.core", forbidden=("numba", "torch", "gymnasium"))


def test_deep_never_imports_numba_kernels():
    import torch  # noqa: F401  (the README's test command installs the deep extra)

    _check_layer(
        "fixpoint_rl.deep",
        forbidden=("numba",),
        forbidden_prefixes=("fixpoint_rl.tabular._kernels",),
    )


_OUTSIDE_LLM_CHECK = r"""
import importlib, pkgutil, sys
import fixpoint_rl.deep as deep
names = ["fixpoint_rl.deep", "fixpoint_rl.benchmarks.train"]
def walk(path, prefix):  # like pkgutil.walk_packages, without importing deep.llm to list it
    for info in pkgutil.iter_modules(path, prefix):
        if info.name == "fixpoint_rl.deep.llm":
            continue
        names.append(info.name)
        if info.ispkg:
            walk(importlib.import_module(info.name).__path__, info.name + ".")
walk(deep.__path__, "fixpoint_rl.deep.")
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] == "transformers"
             or m.startswith("fixpoint_rl.deep.llm"))
print("\n".join(names))
assert not bad, f"imported outside fixpoint_rl.deep.llm: {bad[:5]}"
"""


def test_transformers_is_imported_only_under_deep_llm():
    # Every deep module outside deep/llm (and the `fixpoint train` command) imports neither
    # transformers nor the llm package: trainers that need them are reached through the lazy
    # TRAINER_MODULES table.
    result = subprocess.run([sys.executable, "-c", _OUTSIDE_LLM_CHECK], capture_output=True,
                            text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fixpoint_rl.deep.runtime" in result.stdout.split()


def test_deep_package_import_is_lazy_and_help_needs_no_torch():
    code = ("import sys, fixpoint_rl.deep, fixpoint_rl.benchmarks.__main__ as m\n"
            "m.build_parser()\n"
            "assert 'torch' not in sys.modules, 'importing the CLI or fixpoint_rl.deep loaded torch'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("package", ["fixpoint_rl.tabular", "fixpoint_rl.envs"])
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    missing = []
    for name in module.__all__:
        try:
            getattr(module, name)
        except (AttributeError, ImportError) as error:
            missing.append(f"{name}: {error}")
    assert not missing, "\n".join(missing)


def test_no_public_name_is_shadowed_by_a_submodule():
    # Importing a submodule binds its name on the package: a module named like one of its
    # functions (a submodule ``mtpo`` of tabular exporting mtpo) would shadow the function after
    # that import.
    import pkgutil
    import types

    for package_name in ("fixpoint_rl.tabular", "fixpoint_rl.envs"):
        package = importlib.import_module(package_name)
        submodules = {info.name.rsplit(".", 1)[-1] for info in pkgutil.iter_modules(package.__path__)}
        clashes = sorted(set(package.__all__) & submodules)
        assert not clashes, f"{package_name}: modules named like public names: {clashes}"
        for name in package.__all__:
            assert not isinstance(getattr(package, name), types.ModuleType), name


def test_unknown_public_name_is_an_attribute_error():
    import fixpoint_rl.tabular as tabular_api

    with pytest.raises(AttributeError, match="no_such_solver"):
        tabular_api.no_such_solver  # noqa: B018


# ----------------------------------------------------------------------------- the CLI


def test_cli_help_lists_every_subcommand():
    result = subprocess.run(
        ["fixpoint", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    for command in ("bench", "perf", "list"):
        assert command in result.stdout


def test_cli_list_names_every_registered_benchmark():
    from fixpoint_rl.benchmarks.__main__ import main
    from fixpoint_rl.benchmarks.registry import BENCHMARKS, PERF

    result = subprocess.run(
        [sys.executable, "-m", "fixpoint_rl.benchmarks", "list"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    for name in [*BENCHMARKS, *PERF]:
        assert name in result.stdout
    assert main(["bench", "no-such-benchmark"]) == 2


def test_bench_config_validates():
    from fixpoint_rl.benchmarks._runner import BenchConfig

    assert BenchConfig(size="quick").pick(1, 2, 3) == 1
    with pytest.raises(ValueError, match="size"):
        BenchConfig(size="huge")
    with pytest.raises(ValueError, match="seed"):
        BenchConfig(seed=-1)


# ----------------------------------------------------------------------------- validation helpers


def test_checks_name_the_argument_and_value():
    from fixpoint_rl.envs import checks

    with pytest.raises(ValueError, match=r"tau must lie in \(0\.0, inf\), got -1\.0"):
        checks.check_scalar("tau", -1.0, low=0.0, low_inclusive=False)
    with pytest.raises(ValueError, match="tau must be finite"):
        checks.check_scalar("tau", float("nan"))
    with pytest.raises(ValueError, match="eta must be a real number"):
        checks.check_scalar("eta", "0.1")
    with pytest.raises(ValueError, match="ref must sum to 1"):
        checks.check_distribution("ref", [0.5, 0.6])
    with pytest.raises(ValueError, match="ref must have full support"):
        checks.check_distribution("ref", [1.0, 0.0], full_support=True)
    with pytest.raises(ValueError, match="pref must be finite"):
        checks.as_float_array("pref", [[0.5, np.nan], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"pref must have shape \(2, 2\)"):
        checks.as_float_array("pref", np.zeros((2, 3)), shape=(2, 2))
    with pytest.raises(ValueError, match="n_samples must be ≥ 1, got 0"):
        checks.check_int("n_samples", 0, low=1)
    with pytest.raises(ValueError, match="n_samples must be an integer"):
        checks.check_int("n_samples", True)
    with pytest.raises(ValueError, match="kind must be one of"):
        checks.check_choice("kind", "logit", ("logistic", "hinge"))
    with pytest.raises(ValueError, match="seed must be non-negative"):
        checks.as_generator("seed", -3)
    generator = np.random.default_rng(0)
    assert checks.as_generator("seed", generator) is generator


def test_as_float_array_returns_float64_c_contiguous():
    from fixpoint_rl.envs.checks import as_float_array

    out = as_float_array("x", np.arange(12).reshape(3, 4).T)
    assert out.dtype == np.float64 and out.flags.c_contiguous


def test_solver_result_requires_iteration_and_equal_columns():
    from fixpoint_rl.tabular import SolverResult

    result = SolverResult(
        final=np.ones(2) / 2,
        metrics={"iteration": np.array([1, 10]), "kl": np.array([0.1, 0.01])},
        wall_time_s=0.1,
        compile_time_s=0.0,
        config={"solver": "test"},
    )
    assert result.last("kl") == 0.01
    assert list(result.to_frame().columns) == ["iteration", "kl"]
    with pytest.raises(ValueError, match="name must be one of"):
        result.metric("exploitability")
    with pytest.raises(ValueError, match="iteration"):
        SolverResult(final=np.ones(1), metrics={"kl": np.zeros(1)}, wall_time_s=0.0,
                     compile_time_s=0.0, config={})
    with pytest.raises(ValueError, match="equal lengths"):
        SolverResult(final=np.ones(1), metrics={"iteration": np.zeros(2), "kl": np.zeros(3)},
                     wall_time_s=0.0, compile_time_s=0.0, config={})


# ----------------------------------------------------------------------------- shared closed forms


def test_geometric_mixture_matches_the_notes_test_vector():
    # hand-computed vector: π = (.6, .3, .1), μ uniform, exponent ½.
    from fixpoint_rl.tabular.core.mirror import geometric_mixture_log

    mixture = np.exp(geometric_mixture_log(np.log([0.6, 0.3, 0.1]), np.log(np.ones(3) / 3), 0.5))
    # The hand-computed vector has 6 decimals, so 1e-6 is the tolerance their rounding allows.
    np.testing.assert_allclose(mixture, [0.472734, 0.334273, 0.192993], atol=1e-6)


simplex = hnp.arrays(np.float64, st.integers(2, 8), elements=st.floats(0.01, 10.0)).map(
    lambda w: w / w.sum()
)


@given(simplex, st.data())
def test_kl_and_entropy_match_scipy(p, data):
    from scipy.stats import entropy as scipy_entropy

    from fixpoint_rl.tabular.core.mirror import entropy, kl_divergence

    q = data.draw(hnp.arrays(np.float64, p.shape, elements=st.floats(0.01, 10.0)))
    q = q / q.sum()
    # Both are sums of ≤ 8 float64 terms of magnitude ≤ ~10: agreement to 1e-12 is rounding only.
    assert abs(kl_divergence(p, q) - scipy_entropy(p, q)) < 1e-12
    assert abs(entropy(p) - scipy_entropy(p)) < 1e-12


@given(simplex, st.data())
def test_mirror_step_and_policy_gradient_match_finite_differences(p, data):
    from fixpoint_rl.tabular.core.mirror import log_softmax, mirror_step_log, softmax_policy_gradient

    values = data.draw(hnp.arrays(np.float64, p.shape, elements=st.floats(-1.0, 1.0)))
    # mirror step = normalised p·e^δ
    expected = p * np.exp(values) / np.sum(p * np.exp(values))
    np.testing.assert_allclose(np.exp(mirror_step_log(np.log(p), values)), expected, rtol=1e-12)
    # ∇θ Σ softmax(θ)·f by central differences; step 1e-6 gives O(1e-12) truncation and
    # O(1e-10) cancellation error, so 1e-8 is a safe bound.
    logits = np.log(p)
    grad = softmax_policy_gradient(p, values)
    for k in range(p.size):
        bump = np.zeros_like(p)
        bump[k] = 1e-6
        plus = np.exp(log_softmax(logits + bump)) @ values
        minus = np.exp(log_softmax(logits - bump)) @ values
        assert abs((plus - minus) / 2e-6 - grad[k]) < 1e-8


def test_mirror_math_torch_parity():
    import torch
    from fixpoint_rl.tabular.core import mirror

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=3)
    q = rng.dirichlet(np.ones(5), size=3)
    for fn, args in [
        (mirror.kl_divergence, (p, q)),
        (mirror.entropy, (p,)),
        (mirror.geometric_mixture_log, (np.log(p), np.log(q), 0.3)),
        (mirror.softmax_policy_gradient, (p, q)),
        (mirror.softmax, (np.log(p),)),
    ]:
        expected = fn(*args)
        got = fn(*(torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in args))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-13, atol=1e-15)


def test_loglog_slope_recovers_exact_power_laws():
    from fixpoint_rl.tabular import loglog_slope

    t = np.array([1, 10, 100, 1000.0])
    assert loglog_slope(t, 3.0 / t) == pytest.approx(-1.0, abs=1e-12)
    assert loglog_slope(t, 1.0 / np.sqrt(t)) == pytest.approx(-0.5, abs=1e-12)
    # points at or below the floor carry no rate information
    assert np.isnan(loglog_slope(t, np.array([1.0, 1e-20, 1e-20, 1e-20]), floor=1e-15, too_few="nan"))
    with pytest.raises(ValueError, match="min_points"):  # the default refuses instead of a NaN
        loglog_slope(t, np.array([1.0, 1e-20, 1e-20, 1e-20]), floor=1e-15)
    with pytest.raises(ValueError, match="x must be non-negative"):
        loglog_slope([-1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:3]]
    assert blocks[0] == "pip install -e . && fixpoint bench"
    assert "pytest" in blocks[1]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert blocks[1] in ci_lines, "the CI script must run the README's test command unchanged"


def test_readme_python_example_runs_and_prints_the_equilibrium(capsys):
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "exploitability" in printed
    last_line = printed.strip().splitlines()[-1]
    equilibrium = np.array(last_line.strip("[]").split(), dtype=float)
    # the hand-computed dice vector has 6 decimals: 1e-6 is the rounding they allow.
    np.testing.assert_allclose(equilibrium, [0.510348, 0.258332, 0.231320], atol=1e-6)


def test_bench_table_shows_bracketed_labels_verbatim():
    # rich would read "nash_md[n=16]" as markup and drop "[n=16]"
    import pandas as pd
    from rich.console import Console

    from fixpoint_rl.benchmarks._runner import format_table

    console = Console(width=200, record=True)
    console.print(format_table(pd.DataFrame({"algorithm": ["nash_md[n=16]"], "holds": [True]}), "t"))
    assert "nash_md[n=16]" in console.export_text()


def test_check_indices_names_the_argument_and_range():
    from fixpoint_rl.envs.checks import check_indices

    np.testing.assert_array_equal(check_indices("samples", [0, 2, 1], upper=3), [0, 2, 1])
    with pytest.raises(ValueError, match=r"samples must be .* indices in \[0, 2\]"):
        check_indices("samples", [0, 3], upper=3)
    with pytest.raises(ValueError, match="cots must be"):
        check_indices("cots", [1], upper=3, min_size=2)
    with pytest.raises(ValueError, match="answers must be"):
        check_indices("answers", [0.5, 1.0], upper=3)
    with pytest.raises(ValueError, match=r"answers must be .*shape \(3,\)"):
        check_indices("answers", [0, 1], upper=3, shape=(3,))
