"""Data parallelism: ``fixpoint train`` under ``torchrun`` with 2 CPU processes (gloo) equals the
single-process run on the same global batch.

Oracle: the single-process computation on the whole global batch (same seed, same code). DDP
averages the two shard gradients; with a mean loss over equal shards that average is the
global-batch gradient, computed with the sum split into two partial sums. In float64 the
difference is rounding only: each gradient entry (|g| <= 0.61 here) is a sum of B = 64 terms,
relative error <= B·2^-53 ≈ 7e-15, and 40 AdamW steps at lr 1e-2 add such errors up, so
differences stay below ~1e-13 (measured: 1.1e-16 on the gradient, 1.7e-16 on the parameters).
The tests allow 1e-12, while a wrong shard, a missing average or a rank drawing a different
batch changes parameters by > 1e-3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fixpoint_rl.deep import toy
from fixpoint_rl.deep.checkpoint import Checkpointer, load_checkpoint
from fixpoint_rl.deep.config import apply_overrides
from fixpoint_rl.deep.distributed import init_distributed, rank_and_world_size, shard_batch
from fixpoint_rl.deep.runtime import run_trainer

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-12  # see the module docstring
SETTINGS = ["steps=40", "dropout=0", "dtype=float64", "log_every=5", "eval_every=20"]

_WORKER = r'''
import sys
import torch
from fixpoint_rl.benchmarks.__main__ import main
from fixpoint_rl.deep import toy
from fixpoint_rl.deep.config import apply_overrides
from fixpoint_rl.deep.distributed import rank_and_world_size, shard_batch, wrap_ddp

out, settings = sys.argv[1], sys.argv[2:]
# (a) the unchanged training entry point, data-parallel (2 ranks, gloo)
argv = ["train", "toy", "--seed", "3", "--out", out + "/ddp", "--device", "cpu",
        "--checkpoint-every", "10", "--no-progress"]
for item in settings:
    argv += ["--set", item]
assert main(argv) == 0
# (b) one DDP gradient on a fixed global batch
rank, world = rank_and_world_size()
assert world == 2, world
config = apply_overrides(toy.default(), settings)
torch.manual_seed(0)
model = toy.build_model(config)
data = toy.make_dataset(config, seed=5)
x = torch.as_tensor(data["x_train"][:64])
y = torch.as_tensor(data["y_train"][:64])
xb, yb = shard_batch((x, y), rank, world)
net = wrap_ddp(model, "cpu")
torch.mean((net(xb).squeeze(-1) - yb) ** 2).backward()
torch.save({k: p.grad for k, p in model.named_parameters()}, f"{out}/grad-rank{rank}.pt")
'''


def test_shard_batch_takes_contiguous_equal_slices():
    x = torch.arange(12).reshape(6, 2)
    parts = [shard_batch({"x": x, "y": (x[:, 0], np.arange(6))}, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p["x"] for p in parts]), x)
    assert [p["y"][1].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    assert shard_batch(x, 0, 1) is x
    with pytest.raises(ValueError, match="divisible"):
        shard_batch(x, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        shard_batch(x, 3, 3)
    with pytest.raises(ValueError, match="batch"):
        shard_batch(torch.tensor(1.0), 0, 2)


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert init_distributed() == (0, 1) == rank_and_world_size()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        rank_and_world_size()


def test_torchrun_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(tmp_path), *SETTINGS],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # gradient: DDP's average over the two shards == the gradient on the whole global batch
    config = apply_overrides(toy.default(), SETTINGS)
    torch.manual_seed(0)
    model = toy.build_model(config)
    data = toy.make_dataset(config, seed=5)
    x, y = torch.as_tensor(data["x_train"][:64]), torch.as_tensor(data["y_train"][:64])
    torch.mean((model(x).squeeze(-1) - y) ** 2).backward()
    ranks = [torch.load(tmp_path / f"grad-rank{r}.pt") for r in (0, 1)]
    for name, parameter in model.named_parameters():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # all-reduce: same on both
        torch.testing.assert_close(ranks[0][name], parameter.grad, rtol=0, atol=TOLERANCE)

    # training: parameters and logged losses after 40 steps equal the single-process run
    single = tmp_path / "single"
    run_trainer("toy", config, seed=3, out_dir=single, device="cpu", progress=False,
                checkpoint_every=10)
    states = [load_checkpoint(Checkpointer(folder / "checkpoints", 1).latest_path())["state"]
              for folder in (tmp_path / "ddp", single)]
    assert states[0]["model"].keys() == states[1]["model"].keys()
    for key in states[0]["model"]:
        torch.testing.assert_close(states[0]["model"][key], states[1]["model"][key],
                                   rtol=0, atol=TOLERANCE)
    import pandas as pd

    logs = [pd.read_csv(folder / "train-toy.csv") for folder in (tmp_path / "ddp", single)]
    assert list(logs[0].columns) == list(logs[1].columns) == ["step", "loss", "lr", "test_mse"]
    np.testing.assert_array_equal(logs[0]["step"], logs[1]["step"])
    np.testing.assert_allclose(logs[0][["loss", "test_mse"]].to_numpy(),
                               logs[1][["loss", "test_mse"]].to_numpy(), rtol=TOLERANCE,
                               atol=TOLERANCE)
    assert not (tmp_path / "ddp" / "rank1").exists()  # only rank 0 writes
