"""Sweep runner: a grid of training runs on a local process pool and on Ray gives the results of
running each cell alone in this process (oracle: bitwise-equal summaries and CSVs, since every
cell is seeded by the cell and runs with one torch thread)."""

from __future__ import annotations

import json
import operator
from pathlib import Path

import pandas as pd
import pytest

from fixpoint_rl.benchmarks.__main__ import main as cli_main
from fixpoint_rl.deep import toy
from fixpoint_rl.deep.config import apply_overrides
from fixpoint_rl.deep.runtime import run_trainer
from fixpoint_rl.deep.sweep import SweepError, cell_label, grid_cells, run_sweep, train_cell

QUICK = ["steps=30", "eval_every=15", "log_every=5"]


def test_grid_cells_and_labels():
    cells = grid_cells([0, 1], {"lr": [0.1, 0.2], "hidden": [(8,), (4, 4)]}, algorithm="toy")
    assert len(cells) == 8 and cells[0] == {"algorithm": "toy", "seed": 0,
                                             "settings": {"lr": 0.1, "hidden": (8,)}}
    assert [c["seed"] for c in cells[:2]] == [0, 1]  # seeds vary fastest
    labels = [cell_label(c) for c in cells]
    assert len(set(labels)) == 8 and labels[3] == "lr=0.1_hidden=4-4_seed1"
    assert "/" not in cell_label({"seed": 0, "settings": {"name": "a/b"}})
    with pytest.raises(ValueError, match="seeds"):
        grid_cells([])
    with pytest.raises(ValueError, match="grid"):
        grid_cells([0], {"lr": []})
    with pytest.raises(ValueError, match="seed"):
        grid_cells([-1])


def test_run_sweep_in_process_keeps_order_and_reports_failures():
    cells = [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert run_sweep(_sum_cell, cells, workers=0) == [3, 7]
    assert run_sweep(_sum_cell, [], workers=0) == []
    with pytest.raises(SweepError, match="1 of 3 sweep cells failed; cell 1: KeyError") as error:
        run_sweep(_sum_cell, [cells[0], {"a": 1}, cells[1]], workers=0)
    assert error.value.results == [3, None, 7] and list(error.value.failures) == [1]
    with pytest.raises(ValueError, match="workers"):
        run_sweep(_sum_cell, cells, workers=-1)
    with pytest.raises(ValueError, match="fn"):
        run_sweep(3, cells)


def _sum_cell(cell):
    return cell["a"] + cell["b"]


def _expected_summaries(tmp_path: Path, cells: list[dict]) -> list[dict]:
    out = []
    for index, cell in enumerate(cells):
        config = apply_overrides(toy.default(), QUICK + [f"lr={cell['settings']['lr']}"])
        out.append(run_trainer("toy", config, seed=cell["seed"], out_dir=tmp_path / f"alone{index}",
                               progress=False))
    return out


def test_cli_sweep_on_the_local_pool_equals_each_run_alone(tmp_path):
    """`fixpoint train toy --seeds 0 1 --grid lr=0.01,0.03 --workers 2`: 4 cells on 2 spawned
    processes; each cell's summary and CSV equal the same run done alone in this process."""
    base = tmp_path / "sweep"
    argv = ["train", "toy", *[a for s in QUICK for a in ("--set", s)], "--seeds", "0", "1",
            "--grid", "lr=0.01,0.03", "--workers", "2", "--out", str(base)]
    assert cli_main(argv) == 0
    table = pd.read_csv(base / "sweep.csv")
    assert list(table["cell"]) == ["lr=0.01_seed0", "lr=0.01_seed1", "lr=0.03_seed0",
                                   "lr=0.03_seed1"]
    header = json.loads((base / "sweep.json").read_text())
    assert header["kind"] == "train-sweep" and header["seeds"] == [0, 1]
    cells = grid_cells([0, 1], {"lr": [0.01, 0.03]})
    expected = _expected_summaries(tmp_path, cells)
    for index, (row, summary) in enumerate(zip(table.itertuples(), expected)):
        assert row.final_loss == summary["final_loss"] and row.test_mse == summary["test_mse"]
        assert (base / row.cell / "train-toy.csv").read_bytes() == \
            (tmp_path / f"alone{index}" / "train-toy.csv").read_bytes()


@pytest.mark.slow
def test_ray_with_two_cpus_equals_the_local_pool(tmp_path):
    """A local Ray instance with 2 CPUs runs a 4-cell grid; results equal the local pool's."""
    import ray  # in the dev extra (and the ray extra)
    cells = grid_cells([0, 1], {"lr": [0.01, 0.03]}, algorithm="toy", preset="default",
                       overrides=QUICK)
    local_cells = [dict(c, out_dir=str(tmp_path / "local" / cell_label(c))) for c in cells]
    ray_cells = [dict(c, out_dir=str(tmp_path / "ray" / cell_label(c))) for c in cells]
    local = run_sweep(train_cell, local_cells, workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_sweep(train_cell, ray_cells, ray_address="local")
    finally:
        ray.shutdown()
    strip = operator.itemgetter("seed", "settings", "final_loss", "test_mse", "steps")
    assert [strip(r) for r in remote] == [strip(r) for r in local]
    for cell in cells:
        label = cell_label(cell)
        assert (tmp_path / "local" / label / "train-toy.csv").read_bytes() == \
            (tmp_path / "ray" / label / "train-toy.csv").read_bytes()
