"""``fixpoint bench`` / ``fixpoint perf`` output: tables that fit 80 and 120 columns without
splitting a number, summary lines, exit statuses, ``--out`` checked before any work, ``--format``,
atomic output files and Ctrl-C (exit 130, one line, no partial files).

Oracles: the cell texts themselves (every formatted number must appear whole on one line), line
lengths measured on the rendered text, exit statuses and files on disk. The registered benchmarks
are replaced by a tiny fake module (written to a temporary folder) so these tests take seconds.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from fixpoint_rl.benchmarks import registry
from fixpoint_rl.benchmarks._runner import (
    format_cell,
    format_number,
    format_table,
    normalize_table,
    print_wide,
    summarize,
    validate_out_dir,
    write_outputs,
)

REPO = Path(__file__).resolve().parents[1]

FAKE_MODULE = textwrap.dedent(
    '''
    import os, pathlib, time
    import numpy as np
    import pandas as pd

    DISPLAY_COLUMNS = ("kl", "bound", "slope")
    TAU = 0.1

    def run(config):
        marker = os.environ.get("FAKE_MARKER")
        if marker:
            pathlib.Path(marker).write_text("ran")
        if os.environ.get("FAKE_SLEEP"):
            time.sleep(float(os.environ["FAKE_SLEEP"]))
        fail = os.environ.get("FAKE_FAIL") == "1"
        rows = []
        for problem in ("dice", "contextual(X=1000,K=16)"):
            rows.append(dict(algorithm="nash_md(theorem,n=100)", problem=problem,
                             claim="KL_T ≤ 8/(τ²(T+1)) at every checkpoint (Theorem 1)",
                             holds=not fail, kl=1.882e-12, bound=4.623e-10, slope=-1.0034,
                             exploitability=-3.3e-17, iterations=100000, wall_s=12.3456,
                             inside_region=False, K=16, X=1000, tau=0.1))
            rows.append(dict(algorithm="fictitious_play(average)", problem=problem, claim=None,
                             holds=None, kl=0.123456, bound=np.nan, slope=np.nan,
                             exploitability=7.77e-33, iterations=3000, wall_s=0.000123,
                             inside_region=True, K=16, X=1000, tau=0.1))
        return pd.DataFrame(rows)
    '''
)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Register ``fake`` (bench and perf) backed by FAKE_MODULE; returns the marker path."""
    folder = tmp_path / "fake_pkg"
    folder.mkdir()
    (folder / "fixpoint_fake_bench.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    entry = registry.Entry("fake", "fixpoint_fake_bench", "a fake family for CLI tests")
    monkeypatch.setitem(registry.BENCHMARKS, "fake", entry)
    monkeypatch.setitem(registry.PERF, "fake", entry)
    marker = tmp_path / "ran.txt"
    monkeypatch.setenv("FAKE_MARKER", str(marker))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_SLEEP", raising=False)
    return marker


def _render(table: pd.DataFrame, width: int, **kwargs) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    rendered = format_table(table, "fixpoint bench fake: a title long enough to wrap " * 2,
                            width=width, **kwargs)
    print_wide(console, rendered, bool(kwargs.get("wide")))  # as the command prints it
    return console.export_text()


def _table() -> pd.DataFrame:
    import importlib.util

    spec = importlib.util.spec_from_loader("fake_for_table", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(FAKE_MODULE, module.__dict__)
    return module.run(None)


# ----------------------------------------------------------------------------- tables


@pytest.mark.parametrize("width", [80, 120])
def test_no_number_is_split_and_no_line_exceeds_the_width(width):
    table = _table()
    text = _render(table, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    shown = normalize_table(table)
    # every formatted number in a shown column appears whole on one line
    header = next(line for line in lines if line.startswith("algorithm"))
    for column in ("kl", "bound", "slope"):
        assert column in header
        for value in shown[column]:
            cell = format_cell(value, column)
            assert any(re.search(rf"(^|\s){re.escape(cell)}(\s|$)", line) for line in lines), cell
    # nothing that looks like a broken float: a line ending in "e-" / "e+" or a lone exponent
    assert not any(re.search(r"\de[-+]?$", line.rstrip()) for line in lines)


def test_narrow_table_hides_columns_and_says_so_wide_shows_all():
    table = _table()
    narrow = _render(table, 80)
    assert "hidden at 80 columns" in narrow and "--wide" in narrow
    wide = _render(table, 80, wide=True)  # the caller prints it at its required width
    assert "hidden" not in wide
    for column in ("exploitability", "inside_region", "wall_s"):
        assert column in wide


def test_only_holds_false_reads_as_failure():
    assert format_cell(False, "holds") == "FAIL"
    assert format_cell(True, "holds") == "yes"
    assert format_cell(None, "holds") == "–"
    assert format_cell(np.nan, "holds") == "–"
    # a descriptive boolean (e.g. inside_region) is lower-case, never an upper-case NO / FAIL
    assert format_cell(False, "inside_region") == "no"
    text = _render(_table(), 120)
    assert "NO" not in text.split() and "FAIL" not in text


def test_numbers_have_three_significant_digits():
    assert format_number(1.882e-12) == "1.88e-12"
    assert format_number(4.623e-10) == "4.62e-10"
    assert format_number(0.0123456) == "0.0123"
    assert format_number(12.345) == "12.3"
    assert format_number(0.2) == "0.2"  # exact short values keep their short form
    assert format_number(1e-9) == "1e-9"
    assert format_number(123456.0) == "1.23e+5"
    assert format_number(0.0) == "0"
    assert format_cell(100000.0, "iterations") == "100000"


def test_claims_are_tagged_and_explained_under_the_table():
    text = _render(_table(), 120)
    assert "C1" in text
    assert "C1: KL_T ≤ 8/(τ²(T+1)) at every checkpoint (Theorem 1)  [2 rows, all hold]" in text


# ----------------------------------------------------------------------------- summaries


def test_summary_lines_count_rows_and_claims():
    table = _table()
    assert summarize("nlhf", table).line() == "nlhf: 4 rows, 2 claims checked, all hold"
    table.loc[0, "holds"] = False
    summary = summarize("nlhf", table)
    assert summary.line() == "nlhf: 4 rows, 2 claims checked, 1 FAILED"
    assert summary.failed == ("nash_md(theorem,n=100) on dice: "
                              "KL_T ≤ 8/(τ²(T+1)) at every checkpoint (Theorem 1)",)
    assert summarize("x", table.assign(holds=None)).line() == "x: 4 rows, no claims checked"
    assert summarize("x", pd.DataFrame({"algorithm": [], "problem": []})).line() == (
        "x: 0 rows, no claims checked")


def test_normalize_puts_the_vocabulary_first_and_rejects_bad_verdicts():
    table = normalize_table(pd.DataFrame({"kl": [1.0], "algorithm": ["a"], "problem": ["p"]}))
    assert list(table.columns) == ["algorithm", "problem", "claim", "holds", "kl"]
    with pytest.raises(ValueError, match="holds"):
        normalize_table(pd.DataFrame({"algorithm": ["a"], "problem": ["p"], "holds": ["NO"]}))


# ----------------------------------------------------------------------------- the command


def test_bench_prints_summaries_and_exits_by_the_claims(fake, capsys, monkeypatch):
    from fixpoint_rl.benchmarks.__main__ import main

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["bench", "fake", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fake: 4 rows, 2 claims checked, all hold" in out
    assert "fixpoint bench: 1 family, 4 rows, 2 claims checked, all hold" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    monkeypatch.setenv("FAKE_FAIL", "1")
    assert main(["bench", "fake", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "2 FAILED" in out and "FAIL" in out
    # fixpoint perf: a missed goal (holds False) is a failure too
    assert main(["perf", "fake", "--no-progress"]) == 1


def test_family_needing_a_missing_extra_is_announced_or_refused(fake, capsys, monkeypatch):
    # `pip install -e . && fixpoint bench` has no torch: the deep families must say they were left
    # out (never crash, never vanish silently); naming one explicitly is a usage error.
    from fixpoint_rl.benchmarks.__main__ import main

    needy = registry.Entry("needy", "fixpoint_fake_bench", "needs a package that is not installed",
                           requires=("no_such_package_for_fixpoint_tests",), extra="deep")
    only_these = {"fake": registry.BENCHMARKS["fake"], "needy": needy}
    monkeypatch.setattr(registry, "BENCHMARKS", only_these)
    monkeypatch.setattr(sys.modules["fixpoint_rl.benchmarks.__main__"], "BENCHMARKS", only_these)
    assert main(["bench", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert 'needy: not run (needs no_such_package_for_fixpoint_tests; pip install -e ".[deep]")' \
        in captured.err
    assert "fixpoint bench: 1 family" in captured.out
    assert main(["bench", "needy", "--no-progress"]) == 2
    assert "needy needs no_such_package_for_fixpoint_tests" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["", "file", "file/below"])
def test_out_is_checked_before_any_work(fake, tmp_path, capsys, bad):
    from fixpoint_rl.benchmarks.__main__ import main

    (tmp_path / "file").write_text("not a folder")
    out = "" if bad == "" else str(tmp_path / bad)
    assert main(["bench", "fake", "--no-progress", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fixpoint bench: --out") and "Traceback" not in err
    assert not fake.exists()  # the benchmark never ran


def test_validate_out_dir_creates_missing_folders(tmp_path):
    assert validate_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    assert validate_out_dir(None) is None


def test_out_files_have_the_configuration_and_summary(fake, tmp_path, capsys):
    from fixpoint_rl.benchmarks.__main__ import main

    assert main(["bench", "fake", "--quick", "--seed", "3", "--no-progress", "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "bench-fake.csv")
    assert list(rows.columns[:4]) == ["algorithm", "problem", "claim", "holds"]
    header = json.loads((tmp_path / "bench-fake.json").read_text())
    assert header["config"]["size"] == "quick" and header["config"]["seed"] == 3
    assert header["config"]["constants"]["TAU"] == 0.1
    assert header["summary"] == {"rows": 4, "claims_checked": 2, "claims_failed": 0, "failed": []}
    assert "versions" in header and "git_sha" in header
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_format_csv_and_json_print_every_row(fake, capsys, fmt):
    from fixpoint_rl.benchmarks.__main__ import main

    assert main(["bench", "fake", "--no-progress", "--format", fmt]) == 0
    captured = capsys.readouterr()
    if fmt == "csv":
        rows = pd.read_csv(io.StringIO(captured.out))
        assert list(rows.columns[:5]) == ["benchmark", "algorithm", "problem", "claim", "holds"]
        assert len(rows) == 4
    else:
        payload = json.loads(captured.out)
        assert payload["benchmarks"][0]["name"] == "fake"
        assert len(payload["benchmarks"][0]["rows"]) == 4
        assert payload["benchmarks"][0]["header"]["config"]["seed"] == 0
    assert "fake: 4 rows, 2 claims checked, all hold" in captured.err


def test_help_names_the_output_files():
    from fixpoint_rl.benchmarks.__main__ import build_parser

    parser = build_parser()
    bench = parser._subparsers._group_actions[0].choices["bench"].format_help()
    perf = parser._subparsers._group_actions[0].choices["perf"].format_help()
    assert "bench-<name>.csv" in bench and "bench-<name>.json" in bench
    assert "perf-<name>.csv" in perf
    assert "--format" in bench and "--wide" in bench


def test_generator_seed_is_recorded_by_name_not_address():
    from fixpoint_rl.tabular.core.records import jsonable

    text = json.dumps(jsonable({"seed": np.random.default_rng(0)}))
    assert "PCG64" in text and "0x" not in text


# ----------------------------------------------------------------------------- atomic files, Ctrl-C


def test_sigint_during_the_renames_is_held_until_both_files_are_in_place(tmp_path, monkeypatch):
    import fixpoint_rl.tabular.core.records as records

    real_replace = os.replace
    calls = []

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C between the two renames

    monkeypatch.setattr(records.os, "replace", replace_then_interrupt)
    table = pd.DataFrame({"algorithm": ["a"], "problem": ["p"], "claim": [None], "holds": [None]})
    with pytest.raises(KeyboardInterrupt):
        write_outputs(tmp_path, "bench-x", table, {"seed": 0})
    assert len(calls) == 2
    assert pd.read_csv(tmp_path / "bench-x.csv").shape == (1, 4)
    assert json.loads((tmp_path / "bench-x.json").read_text())["seed"] == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_ctrl_c_exits_130_with_one_line_and_no_partial_files(tmp_path):
    folder = tmp_path / "fake_pkg"
    folder.mkdir()
    (folder / "fixpoint_fake_bench.py").write_text(FAKE_MODULE)
    out = tmp_path / "out"
    marker = tmp_path / "ran.txt"
    script = textwrap.dedent(
        f'''
        import sys
        sys.path.insert(0, {str(folder)!r})
        from fixpoint_rl.benchmarks import registry
        from fixpoint_rl.benchmarks.__main__ import main
        registry.BENCHMARKS.clear()
        registry.BENCHMARKS["fake"] = registry.Entry("fake", "fixpoint_fake_bench", "fake")
        sys.exit(main(["bench", "--no-progress", "--out", {str(out)!r}]))
        '''
    )
    env = {**os.environ, "FAKE_MARKER": str(marker), "FAKE_SLEEP": "60"}
    # A job started in the background by a non-interactive shell (as CI may run us) inherits
    # SIGINT ignored, and Python then never raises KeyboardInterrupt: restore the terminal default.
    process = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # the benchmark has started (and is sleeping)
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [
        "fixpoint bench: interrupted (Ctrl-C); no partial output files were left"
    ]
    assert "Traceback" not in stdout + stderr
    assert out.is_dir() and list(out.iterdir()) == []
