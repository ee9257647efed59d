"""TD-Flow training, metrics, GPI and the ``fixpoint train tdflow`` entry point.

Oracles: the exact successor measure of a 2-D linear-Gaussian system (EMD of a trained TD²-CFM
model against the finite-sample floor: exact samples against exact samples of the same size),
brute-force assignment for the EMD, exact tabular values for GPI, an uninterrupted run for the
bitwise resume after SIGKILL."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fixpoint_rl.deep.config import apply_overrides
from fixpoint_rl.deep.ghm.gpi import gpi_select, successor_values
from fixpoint_rl.deep.ghm.metrics import emd, mean_error, value_mse
from fixpoint_rl.deep.ghm.train import GHMTrainer, TDFlowConfig, fit
from fixpoint_rl.envs.ghm_tasks import TabularEmbedding, garnet_embedding

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

TINY = dict(steps=12, hidden=(16, 16), time_dim=8, batch_size=32, dataset_size=400,
            eval_every=6, eval_sources=2, eval_samples=16, nll_samples=4, log_every=3)


def test_emd_is_the_exact_assignment_optimum():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    for cost, power in (("sqeuclidean", 2), ("euclidean", 1)):
        brute = min(np.mean([np.linalg.norm(x[i] - y[p[i]]) ** power for i in range(6)])
                    for p in itertools.permutations(range(6)))
        assert abs(emd(x, y, cost) - brute) < 1e-12
    manhattan = lambda a, b: np.abs(a[:, None] - b[None]).sum(-1)
    brute = min(np.mean([np.abs(x[i] - y[p[i]]).sum() for i in range(6)])
                for p in itertools.permutations(range(6)))
    assert abs(emd(x, y, manhattan) - brute) < 1e-12
    assert emd(x, x) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        emd(x, y[:5])
    with pytest.raises(ValueError, match="cost"):
        emd(x, y, "cosine")
    np.testing.assert_allclose(mean_error(np.ones((2, 3, 2)), np.zeros((2, 2))), np.sqrt(2))
    assert value_mse([1.0, 3.0], [0.0, 1.0]) == 2.5


def test_config_validation_and_overrides():
    config = apply_overrides(TDFlowConfig(), ["variant=td_cfm_coupled", "hidden=64,64", "gamma=0.95"])
    assert config.variant == "td_cfm_coupled" and config.hidden == (64, 64) and config.gamma == 0.95
    for bad, match in ((dict(gamma=1.0), "gamma"), (dict(variant="td3"), "variant"),
                       (dict(hidden=()), "hidden"), (dict(time_dim=7), "time_dim"),
                       (dict(nll_samples=500), "nll_samples"), (dict(path="zigzag"), "path")):
        with pytest.raises(ValueError, match=match):
            TDFlowConfig(**bad)


@pytest.mark.parametrize("variant", ["mc_cfm", "td_cfm", "td_cfm_coupled", "td2_cfm"])
def test_fit_is_bitwise_reproducible(variant):
    config = TDFlowConfig(variant=variant, **TINY)
    a, rows_a = fit(config, seed=3)
    b, rows_b = fit(config, seed=3)
    assert rows_a == rows_b
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    _, rows_c = fit(config, seed=4)
    assert rows_c != rows_a


def test_tabular_and_point_mass_problems_train_and_evaluate():
    for problem in ("tabular", "point_mass"):
        trainer, rows = fit(TDFlowConfig(problem=problem, arch="unet", path="curved", **TINY), seed=0)
        assert {"emd", "emd_floor", "nll", "mean_error", "value_mse"} <= set(rows[-1])
        assert all(np.isfinite(v) for v in rows[-1].values())
        # exact density and fixed-point field only where the successor measure is known
        assert ("true_nll" in rows[-1]) == ("field_rel_mse" in rows[-1]) == (problem == "tabular")


def test_trained_td2_cfm_reaches_the_finite_sample_floor_on_a_linear_gaussian_system():
    """2-D rotation system, γ = 0.5: after 250 steps TD²-CFM's EMD to 256 exact samples per
    source is within 6× the finite-sample floor (EMD between two exact samples of the same size;
    observed 4.0×, 0.066 vs 0.016) and 10× below the untrained model's (observed ≈ 1.0).
    5 midpoint steps for the bootstrap ODE (the paper's Table 10: 5 steps are already usable;
    10 steps gave the same EMD here, 0.065)."""
    config = TDFlowConfig(gamma=0.5, steps=250, hidden=(64, 64), time_dim=16, batch_size=128,
                          lr=2e-3, ema=0.95, dataset_size=5000, eval_every=10**6, eval_sources=4,
                          eval_samples=256, nll_samples=0, ode_steps=5)
    untrained = GHMTrainer(config, seed=0).evaluate()
    _, rows = fit(config, seed=0)
    final = rows[-1]
    assert final["emd"] < 6 * final["emd_floor"]
    assert final["emd"] < untrained["emd"] / 10
    # Theorem 1 / Corollary 1: the learned field approaches the analytic fixed-point velocity
    # along the exact path (relative squared error: observed 0.037 trained, 1.14 untrained)
    assert final["field_rel_mse"] < 0.1 < untrained["field_rel_mse"]


@pytest.mark.slow
def test_td2_cfm_at_gamma_0_9_and_variant_ordering():
    """γ = 0.9 (horizon 10), 1500 steps, 8 sources × 256 samples: TD²-CFM within 6× the floor."""
    rows = {}
    for variant in ("td2_cfm", "td_cfm"):
        config = TDFlowConfig(gamma=0.9, variant=variant, steps=1500, hidden=(64, 64), time_dim=16,
                              batch_size=128, lr=1e-3, ema=0.99, dataset_size=20000,
                              eval_every=10**6, nll_samples=0)
        rows[variant] = fit(config, seed=0)[1][-1]
    assert rows["td2_cfm"]["emd"] < 6 * rows["td2_cfm"]["emd_floor"]
    assert rows["td2_cfm"]["emd"] < rows["td_cfm"]["emd"]


def test_fixpoint_train_tdflow_resumes_bitwise_after_sigkill(tmp_path):
    from fixpoint_rl.deep.runtime import run_trainer

    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in {**TINY, "steps": 20, "eval_every": 10}.items()]
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "fixpoint_rl.benchmarks", "train", "tdflow", "--preset",
               "quick", "--seed", "7", "--out", str(killed), "--checkpoint-every", "5",
               "--no-progress", "--set", "variant=td_cfm", *sum((["--set", s] for s in sets), [])]
    # the checkpoint of step 10 pauses 60 s before its rename (the runtime's test hook), so the
    # kill lands after step 5's checkpoint and before the run can finish
    env = {**os.environ, "FIXPOINT_CHECKPOINT_PAUSE_S": "60@10"}
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if list((killed / "checkpoints").glob("step-*.pt")):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved = sorted((killed / "checkpoints").glob("step-*.pt"))
    assert saved and "0000000020" not in saved[-1].name  # killed before the end

    from fixpoint_rl.deep.registry import get_trainer

    spec = get_trainer("tdflow")
    config = apply_overrides(spec.config("quick"), ["variant=td_cfm", *sets])
    resumed = run_trainer("tdflow", config, seed=7, out_dir=killed, preset="quick",
                          checkpoint_every=5, require_checkpoint=True, progress=False)
    fresh = run_trainer("tdflow", config, seed=7, out_dir=tmp_path / "fresh", preset="quick",
                        checkpoint_every=5, progress=False)
    assert resumed == fresh
    assert (killed / "train-tdflow.csv").read_text() == (tmp_path / "fresh" / "train-tdflow.csv").read_text()
    last = lambda d: torch.load(sorted((d / "checkpoints").glob("step-*.pt"))[-1], weights_only=False)
    a, b = last(killed), last(tmp_path / "fresh")
    a = a.get("state", a)
    b = b.get("state", b)
    for key, value in a["trainer"]["model"].items():
        assert torch.equal(value, b["trainer"]["model"][key]), key


def test_gpi_over_a_finite_policy_set_on_a_tabular_embedding():
    """Values from exact successor samples pick the same policy as the exact Q-values wherever
    the gap exceeds the Monte-Carlo error, and the GPI policy is at least as good as every policy
    in the set (GPI theorem), checked by exact linear solves."""
    base = garnet_embedding(5, 2, gamma=0.9, seed=4, noise_std=0.1)
    rng = np.random.default_rng(0)
    policies = [rng.dirichlet(np.ones(2), size=5) for _ in range(3)]
    reward_direction = rng.standard_normal(5)
    reward_states = base.embedding @ reward_direction
    problems = [TabularEmbedding(P=base.P, policy=pi, behaviour=base.behaviour, gamma=0.9,
                                 noise_std=0.1) for pi in policies]
    states = np.arange(5)
    exact = np.empty((3, 5))
    estimates = np.empty((3, 5))
    n = 20_000
    for i, (problem, pi) in enumerate(zip(problems, policies)):
        q = problem.state_values(reward_states)                       # [S, A]
        exact[i] = (pi * q).sum(1)                                    # V^{π_i}(s)
        acts = problem.act(np.repeat(states, n), seed=i)

        def sampler(count, problem=problem, acts=acts):
            return problem.sample_successor(np.repeat(states, count), acts, seed=10 + i).reshape(5, count, 5)

        estimates[i] = successor_values(sampler, lambda x: x @ reward_direction, 0.9, n)
    # MC error of each estimate: sd(r)/(1−γ)/√n ≤ 3/0.1/141 ≈ 0.2; 5 s.e. ≈ 1.0
    assert np.all(np.abs(estimates - exact) < 1.0)
    clear = np.sort(exact, axis=0)[-1] - np.sort(exact, axis=0)[-2] > 2.0
    np.testing.assert_array_equal(gpi_select(estimates)[clear], gpi_select(exact)[clear])
    # GPI theorem: the policy π_GPI(s) = π_{i*(s)}(s) has V ≥ max_i V^{π_i} at every state
    chosen = gpi_select(exact)
    gpi_policy = np.stack([policies[chosen[s]][s] for s in range(5)])
    gpi_problem = TabularEmbedding(P=base.P, policy=gpi_policy, behaviour=base.behaviour,
                                   gamma=0.9, noise_std=0.1)
    v_gpi = (gpi_policy * gpi_problem.state_values(reward_states)).sum(1)
    assert np.all(v_gpi >= exact.max(axis=0) - 1e-10)
    with pytest.raises(ValueError, match="values"):
        gpi_select(np.zeros(3))
    with pytest.raises(ValueError, match="gamma"):
        successor_values(lambda n: np.zeros((1, n, 2)), lambda x: x[..., 0], 1.0, 4)


@pytest.mark.slow
def test_gpi_with_trained_td2_cfm_models_on_a_linear_gaussian_system():
    """GHM-based policy evaluation and GPI: one TD²-CFM model per policy (two feedback gains of
    a 2-D system, γ = 0.5, 400 steps); values (1−γ)^{-1} E r(X) from 512 model samples match the
    exact quadratic values (MSE below 5 % of their variance across sources) and GPI picks the
    exact best policy wherever the exact gap exceeds 0.3."""
    from fixpoint_rl.deep.ghm.gpi import model_sampler
    from fixpoint_rl.envs.ghm_tasks import LinearGaussianSystem

    F = 0.95 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    gains = [np.zeros((2, 2)), np.array([[-0.5, 0.3], [-0.3, -0.2]])]
    config = TDFlowConfig(gamma=0.5, steps=400, hidden=(64, 64), time_dim=16, batch_size=128,
                          lr=2e-3, ema=0.95, dataset_size=5000, eval_every=10**6, ode_steps=5)
    sources = np.random.default_rng(0).standard_normal((16, 2)) * 1.5
    reward = lambda x: -np.sum((x - np.array([1.0, 0.0])) ** 2, axis=-1)
    exact, estimates = [], []
    for index, gain in enumerate(gains):
        system = LinearGaussianSystem(A=F, B=np.eye(2), gain=gain, noise_std=0.1, gamma=0.5,
                                      behaviour_std=0.5)
        trainer, _ = fit(config, seed=index, evaluate=False, problem=system)
        Q = -np.eye(2)
        exact.append(system.quadratic_value(sources, Q=Q, b=np.array([2.0, 0.0]), c=-1.0))
        sampler = model_sampler(trainer.target, system.condition(sources), seed=1, steps=10)
        estimates.append(successor_values(sampler, reward, 0.5, 512))
    exact, estimates = np.array(exact), np.array(estimates)
    assert np.mean((exact - estimates) ** 2) < 0.05 * exact.var()
    gap = np.abs(exact[0] - exact[1])
    clear = gap > 0.3
    assert clear.sum() >= 4
    np.testing.assert_array_equal(gpi_select(estimates)[clear], gpi_select(exact)[clear])
