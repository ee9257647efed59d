"""The deep C51 family against the tabular operators, plus replay, losses, configs and resume.

Oracles: ``categorical_evaluation_fixed_point`` (power iteration of Π_C T^π) and
``policy_q_values`` (linear solve) for the one-hot network trained by the deep pieces on exact
expectations over enumerated windows (``deep.distributional.evaluation``); ``contraction_modulus`` (empirical Lipschitz constant of the
truncated per-step operator) for the per-target-update contraction; the core ``cramer_distance``
for the Cramér loss; an uninterrupted run for the SIGKILL-and-resume identity (bitwise).
"""

from __future__ import annotations

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
from fixpoint_rl.deep.distributional.agent import C51Config
from fixpoint_rl.deep.distributional.evaluation import train_one_hot_evaluation
from fixpoint_rl.deep.distributional.losses import (
    categorical_loss,
    clip_renormalise_cross_entropy,
    cramer_loss,
    cross_entropy,
)
from fixpoint_rl.deep.distributional.replay import SequenceReplay
from fixpoint_rl.deep.registry import get_trainer
from fixpoint_rl.envs.mdp import garnet, random_policy
from fixpoint_rl.tabular import qlambda as q
from fixpoint_rl.tabular.core.categorical import CategoricalSupport, cramer_distance

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- tabular check
@pytest.mark.parametrize("trace,lam", [("q_lambda", 0.7), ("retrace", 1.0)])
def test_one_hot_network_converges_to_the_categorical_fixed_point_off_policy(trace, lam):
    # Garnet, γ = 1/2, rewards in [0, 1): returns lie in [0, 2) = the support, so nothing is
    # clipped and η_C's means equal Q^π exactly. Behaviour μ = ½π + ½(another policy).
    # Evaluation mode (fixed target policy π), exact expectation over all n = 2 windows,
    # per-step projection (expected operator with fixed point η_C for every λ, μ), the deep
    # learner_update (cross-entropy, Adam), target network copied every 100 steps.
    mdp = garnet(5, 2, 2, seed=3, gamma=0.5)
    pi = random_policy(mdp, 1)
    mu = 0.5 * pi + 0.5 * random_policy(mdp, 2)
    support = CategoricalSupport(0.0, 2.0, 11)
    reference = q.categorical_evaluation_fixed_point(mdp, pi, support=support)
    modulus = q.contraction_modulus(mdp, pi, mu, lam, support=support, trace=trace,
                                    projection="per_step", horizon=2)
    result = train_one_hot_evaluation(mdp, pi, mu, support=support, reference=reference,
                                      trace=trace, lam=lam, window=2, target_updates=14,
                                      steps_per_update=100, lr=0.1)
    errors = result["sup_cramer"]
    # sup over (s, a) of the Cramér distance to η_C; the floor of the inner fit is ~2e-4
    assert errors[-1] < 1e-3
    np.testing.assert_allclose(result["eta"] @ support.atoms, q.policy_q_values(mdp, pi), atol=1e-3)
    # contraction per target update, while the error is far above the inner-fit floor
    ratios = errors[1:] / errors[:-1]
    early = errors[:-1] > 5e-3
    assert early.sum() >= 3
    assert np.all(ratios[early] <= modulus), (ratios[early], modulus)


# ----------------------------------------------------------------------------- replay
def test_replay_windows_respect_pads_terminals_and_truncations():
    replay = SequenceReplay(1, 64, (1,), 2, window=3)
    # stream: episode of 4 steps ending in a terminal, pad, episode truncated after 3, pad, ...
    terminal = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    truncated = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    pads = [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    for t in range(12):
        replay.add(np.array([[t]]), np.array([t % 2]), np.array([float(t)]), np.array([terminal[t]]),
                   np.array([truncated[t]]), np.array([[0.25, 0.75]]), np.array([pads[t]]))
    batch = replay.sample(2000, np.random.default_rng(0))
    starts = set(batch["obs"][:, 0, 0].tolist())
    # valid starts: entries 0..8 (entry + 3 ≤ 11), not a pad (4, 8), no truncation at entries
    # start..start+1 (6 and 7 excluded: truncation at 7 within their first n − 1 steps)
    assert starts == {0, 1, 2, 3, 5}
    window = batch["obs"][batch["obs"][:, 0, 0] == 2][0, :, 0]
    assert window.tolist() == [2, 3, 4, 5]  # x_2 = entry 4 is the final (pad) observation
    assert batch["behaviour"].shape == (2000, 4, 2) and batch["rewards"].shape == (2000, 3)


# ----------------------------------------------------------------------------- losses
def test_losses_match_their_formulas_and_cross_entropy_gradient_is_linear_in_the_target():
    rng = np.random.default_rng(0)
    support = CategoricalSupport(-2.0, 2.0, 9)
    logits = torch.tensor(rng.normal(size=(4, 9)), requires_grad=True)
    signed = torch.tensor(rng.normal(size=(4, 9)))
    signed = signed - (signed.sum(-1, keepdim=True) - 1.0) / 9  # unit mass, signed
    probs = torch.softmax(logits, -1).detach().numpy()
    np.testing.assert_allclose(cramer_loss(logits, signed, support).detach().numpy(),
                               cramer_distance(signed.numpy(), probs, support, squared=True),
                               atol=1e-12)
    positive = torch.softmax(torch.tensor(rng.normal(size=(4, 9))), -1)
    np.testing.assert_allclose(clip_renormalise_cross_entropy(logits, positive).detach().numpy(),
                               cross_entropy(logits, positive).detach().numpy(), atol=1e-12)
    # the expected gradient of the linear cross-entropy = gradient at the expected target
    t1, t2 = signed, positive.double()
    grads = []
    for t in (t1, t2, 0.3 * t1 + 0.7 * t2):
        logits.grad = None
        cross_entropy(logits, t).sum().backward()
        grads.append(logits.grad.clone())
    np.testing.assert_allclose(grads[2], 0.3 * grads[0] + 0.7 * grads[1], atol=1e-12)
    with pytest.raises(ValueError, match="loss"):
        categorical_loss("kl", logits, signed, support)


# ----------------------------------------------------------------------------- configs
def test_presets_exist_and_bad_config_values_name_the_field():
    for name in ("c51", "nstep_c51", "retrace_c51", "qlambda_c51"):
        spec = get_trainer(name)
        assert set(spec.presets) >= {"minatar", "atari"}
        assert spec.config("atari").torso == "nature_cnn"
    assert get_trainer("qlambda_c51").config("minatar").trace == "q_lambda"
    with pytest.raises(ValueError, match="lam"):
        C51Config(lam=1.5)
    with pytest.raises(ValueError, match="v_max"):
        C51Config(v_min=1.0, v_max=0.0)
    with pytest.raises(ValueError, match="loss"):
        apply_overrides(C51Config(), ["loss=kl"])
    assert apply_overrides(C51Config(), ["window=5"]).window == 5


# ----------------------------------------------------------------------------- resume
_OVERRIDES = ["steps=400", "learning_starts=100", "buffer_size=1000", "torso=dopamine_minatar",
              "log_every=100", "num_envs=2"]


def _final_state(folder: Path):
    state = torch.load(sorted((folder / "checkpoints").glob("step-*.pt"))[-1], weights_only=False)
    return state["state"]["online"], (folder / "train-c51.csv").read_text()


def test_sigkill_and_resume_gives_the_same_parameters_and_log(tmp_path):
    from fixpoint_rl.deep.runtime import run_trainer

    config = apply_overrides(get_trainer("c51").config("quick"), _OVERRIDES)
    run_trainer("c51", config, seed=3, out_dir=tmp_path / "a", checkpoint_every=100,
                progress=False)
    killed = tmp_path / "b"
    command = [sys.executable, "-m", "fixpoint_rl.benchmarks", "train", "c51", "--preset", "quick",
               "--seed", "3", "--checkpoint-every", "100", "--no-progress", "--out", str(killed)]
    for override in _OVERRIDES:
        command += ["--set", override]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None \
            and not list((killed / "checkpoints").glob("step-0000000200.pt")):
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()  # still running: kill it
    process.send_signal(signal.SIGKILL)
    process.wait()
    # resume in this process (the runtime restores every generator from the checkpoint)
    run_trainer("c51", config, seed=3, out_dir=killed, checkpoint_every=100, progress=False,
                require_checkpoint=True)
    params_a, csv_a = _final_state(tmp_path / "a")
    params_b, csv_b = _final_state(killed)
    assert params_a.keys() == params_b.keys()
    for key in params_a:
        assert torch.equal(params_a[key], params_b[key]), key
    assert csv_a == csv_b


@pytest.mark.slow
def test_atari_preset_runs_1000_cpu_steps(tmp_path):
    from fixpoint_rl.deep.runtime import run_trainer

    spec = get_trainer("c51")
    config = apply_overrides(spec.config("atari"), [
        "steps=1000", "learning_starts=800", "buffer_size=4000", "eval_every=1000",
        "eval_episodes=1", "eval_max_steps=50", "log_every=500",
    ])
    summary = run_trainer("c51", config, seed=0, out_dir=tmp_path, progress=False)
    assert summary["steps"] == 1000 and summary["frames"] == 4000
    assert summary["updates"] == 51  # at agent steps 800, 804, ..., 1000
    assert summary["protocol"]["sticky_action_prob"] == 0.25
