"""C51 on CPU: the full MinAtar loop against a CleanRL-style loop, and the projection alone.

Projection (B = 4096 one-step targets, M = 51, torch float32, one thread): the target atoms
r + γz of every row (some outside the support, some on grid points) with a softmax mass, the
inputs of every C51 update. Variants timed in the same run on the same tensors:

  ours (scatter)       ``tabular.core.categorical.categorical_projection`` (default method: two
                       neighbours per source atom, one ``scatter_add``; what every hot path uses)
  hat (dense)          the same function with ``method="hat"`` (the O(N·M) oracle)
  cleanrl row loop     CleanRL ``c51_atari.py``'s projection re-written here: floor/ceil with the
                       (l == u) fix, then ``index_add_`` per batch row in a Python loop
  index_add_ scatter   the same floor/ceil weights with one flat ``index_add_`` (a plain-torch
                       vectorisation of CleanRL's formula)
  rlax (jax.jit)       ``rlax.categorical_l2_project`` under ``jax.jit``, vmapped over rows, when
                       ``jax`` and ``rlax`` are importable (they are not dependencies: the row says
                       "absent" otherwise)

All variants agree to 1e-5 (checked). ``speedup_vs_<baseline>_x`` = baseline seconds / ours
(> 1: ours is faster). Goals (issue 10): ≥ 5× the CleanRL row loop; ≥ 1× rlax.

Full loop (MinAtar Breakout, C51 n = 1, MinAtar-DQN torso, Adam, batch 32, one update every 4
agent steps, target copy every 1000 steps, ε-greedy, same replay size and warm-up): ``ours`` is
``fixpoint train c51`` (``agent.train`` through ``run_trainer``, 4 vector environments, sequence
replay, scatter projection, log_softmax cross-entropy, fused Adam); ``cleanrl-style`` is a loop
written here in CleanRL's shape (one environment in a gymnasium ``SyncVectorEnv``, a transition
replay storing obs and next obs, greedy action with a B = 1 forward pass, per-row ``index_add_``
projection, cross-entropy on clamped probabilities). Steady state: each side runs a short and a
long run from the same seed (learning starts at 500 steps, ε reaches its final 0.01 at 500 steps,
as for most of a real run); env steps/s = (long − short) steps / median difference of their CPU
seconds over ≥ 5 rounds. Goal: ours ≥ 1.2× (``speedup_x`` = CleanRL-style CPU s / ours).
"""

from __future__ import annotations

import copy
import os
import random
import tempfile
import time

import numpy as np
import pandas as pd
import torch

from ._perf_common import machine_header, time_call
from ._runner import BenchConfig

GOAL_ROW_LOOP = 5.0
GOAL_RLAX = 1.0
GOAL_LOOP = 1.2


# ----------------------------------------------------------------------------- projection
def cleanrl_projection(next_atoms, next_pmfs, v_min, v_max, n_atoms):
    """CleanRL c51_atari.py (fe8d8a0), lines of the target computation, re-written."""
    delta_z = (v_max - v_min) / (n_atoms - 1)
    tz = next_atoms.clamp(v_min, v_max)
    b = (tz - v_min) / delta_z
    lower = b.floor().clamp(0, n_atoms - 1)
    upper = b.ceil().clamp(0, n_atoms - 1)
    d_m_l = (upper + (lower == upper).float() - b) * next_pmfs
    d_m_u = (b - lower) * next_pmfs
    target_pmfs = torch.zeros_like(next_pmfs)
    for i in range(target_pmfs.size(0)):
        target_pmfs[i].index_add_(0, lower[i].long(), d_m_l[i])
        target_pmfs[i].index_add_(0, upper[i].long(), d_m_u[i])
    return target_pmfs


def index_add_projection(next_atoms, next_pmfs, v_min, v_max, n_atoms):
    """The same floor/ceil weights with one flat ``index_add_`` over B·M."""
    delta_z = (v_max - v_min) / (n_atoms - 1)
    b = (next_atoms.clamp(v_min, v_max) - v_min) / delta_z
    lower = b.floor().clamp(0, n_atoms - 1)
    upper = b.ceil().clamp(0, n_atoms - 1)
    d_m_l = (upper + (lower == upper).to(b.dtype) - b) * next_pmfs
    d_m_u = (b - lower) * next_pmfs
    rows = torch.arange(b.shape[0]).unsqueeze(1) * n_atoms
    out = torch.zeros(b.shape[0] * n_atoms, dtype=b.dtype)
    out.index_add_(0, (rows + lower.long()).view(-1), d_m_l.view(-1))
    out.index_add_(0, (rows + upper.long()).view(-1), d_m_u.view(-1))
    return out.view(b.shape[0], n_atoms)


def _rlax_function():
    """(rlax.categorical_l2_project, note) or (None, reason).

    rlax's package import pulls in distrax and TensorFlow Probability, which fail with recent jax
    releases; then the function's own source is read from the installed rlax and run on its own
    (it needs only ``jax.numpy`` and ``chex``), so the timed code is still rlax's.
    """
    try:
        import jax  # noqa: F401
    except Exception as error:  # noqa: BLE001 - optional baseline
        return None, f"absent: jax is not installed ({type(error).__name__})"
    try:
        import rlax

        return rlax.categorical_l2_project, "rlax"
    except Exception as error:  # noqa: BLE001
        reason = f"{type(error).__name__}: {error}"[:80]
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("rlax")
    if spec is None or not spec.submodule_search_locations:
        return None, "absent: rlax is not installed"
    try:
        import chex
        import jax.numpy as jnp

        path = Path(list(spec.submodule_search_locations)[0]) / "_src" / "value_learning.py"
        tree = ast.parse(path.read_text())
        node = next(n for n in tree.body
                    if isinstance(n, ast.FunctionDef) and n.name == "categorical_l2_project")
        namespace = {"jnp": jnp, "chex": chex, "Array": object}
        exec(compile(ast.Module([node], type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
        return namespace["categorical_l2_project"], f"rlax source (package import failed: {reason})"
    except Exception as error:  # noqa: BLE001
        return None, f"absent: rlax unusable ({type(error).__name__})"


def _rlax_projection():
    project, note = _rlax_function()
    if project is None:
        return None, note
    import jax

    jitted = jax.jit(jax.vmap(project, in_axes=(0, 0, None)))

    def call(z_p, probs, z_q):
        return jitted(z_p, probs, z_q).block_until_ready()

    return call, note


def projection_rows(config: BenchConfig) -> list[dict]:
    from fixpoint_rl.tabular.core.categorical import CategoricalSupport, categorical_projection

    B, M = 4096, 51
    support = CategoricalSupport(-10.0, 10.0, M)
    gen = torch.Generator().manual_seed(config.seed)
    z = torch.as_tensor(support.atoms, dtype=torch.float32)
    rewards = torch.randint(-1, 2, (B, 1), generator=gen).float() * 2.0  # some atoms on the grid
    gamma = torch.where(torch.rand(B, 1, generator=gen) < 0.5, 0.99, 1.0)
    atoms = rewards + gamma * z  # [B, M], partly outside [−10, 10]
    pmfs = torch.softmax(torch.randn(B, M, generator=gen), -1)
    variants = {
        "ours (scatter)": lambda: categorical_projection(atoms, pmfs, support),
        "hat (dense)": lambda: categorical_projection(atoms, pmfs, support, method="hat"),
        "cleanrl row loop": lambda: cleanrl_projection(atoms, pmfs, -10.0, 10.0, M),
        "index_add_ scatter": lambda: index_add_projection(atoms, pmfs, -10.0, 10.0, M),
    }
    rlax_call, rlax_note = _rlax_projection()
    if rlax_call is not None:
        import jax.numpy as jnp

        a_j, p_j, z_j = jnp.asarray(atoms.numpy()), jnp.asarray(pmfs.numpy()), jnp.asarray(z.numpy())
        variants["rlax (jax.jit)"] = lambda: rlax_call(a_j, p_j, z_j)
    reference = variants["hat (dense)"]().numpy()
    for name, fn in variants.items():
        out = np.asarray(fn())
        err = float(np.max(np.abs(out - reference)))
        if err > 1e-5:
            raise AssertionError(f"projection {name!r} differs from the hat form by {err}")
    repeats = config.pick(5, 7, 15)
    timings = {name: time_call(fn, repeats=repeats, min_sample_s=0.05) for name, fn in variants.items()}
    ours = timings["ours (scatter)"].cpu_s
    rows = []
    for name, t in timings.items():
        claim = holds = None
        speed = t.cpu_s / ours
        if name == "cleanrl row loop":
            claim, holds = f"speedup_vs_cleanrl_x ≥ {GOAL_ROW_LOOP:g}", bool(speed >= GOAL_ROW_LOOP)
        elif name == "rlax (jax.jit)":
            claim, holds = f"speedup_vs_rlax_x ≥ {GOAL_RLAX:g}", bool(speed >= GOAL_RLAX)
        problem = f"B={B}, M={M}, torch float32"
        if name.startswith("rlax"):
            problem = f"B={B}, M={M}, jax float32 ({rlax_note})"
        rows.append({"algorithm": f"projection: {name}", "problem": problem,
                     "claim": claim, "holds": holds, "speedup_x": speed, "us_per_call": t.cpu_s * 1e6,
                     "wall_us": t.wall_s * 1e6, "repeats": t.repeats, "spread": t.spread})
    if rlax_call is None:
        rows.append({"algorithm": "projection: rlax (jax.jit)",
                     "problem": f"{rlax_note} (pip install jax rlax to measure it)",
                     "claim": None, "holds": None})
    return rows


# ----------------------------------------------------------------------------- full loops
def cleanrl_style_loop(config, steps: int, seed: int) -> int:
    """CleanRL's c51 loop shape on MinAtar (written here; see the module docstring)."""
    import gymnasium

    from fixpoint_rl.deep.distributional.networks import build_network
    from fixpoint_rl.envs.gym_minatar import MinAtarEnv
    from fixpoint_rl.tabular.core.categorical import CategoricalSupport

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: MinAtarEnv(config.game, sticky_action_prob=config.sticky_action_prob)])
    support = CategoricalSupport(config.v_min, config.v_max, config.n_atoms)
    atoms = torch.as_tensor(support.atoms, dtype=torch.float32)
    obs_shape = envs.single_observation_space.shape
    n_actions = int(envs.single_action_space.n)
    q_network = build_network(config.torso, obs_shape, n_actions, atoms)
    target_network = copy.deepcopy(q_network)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.lr, eps=config.adam_eps)
    cap = config.buffer_size
    rb_obs = np.zeros((cap, *obs_shape), np.uint8)
    rb_next = np.zeros((cap, *obs_shape), np.uint8)
    rb_act = np.zeros(cap, np.int64)
    rb_rew = np.zeros(cap, np.float32)
    rb_done = np.zeros(cap, np.float32)
    size = pos = 0

    def get_action(net, x, action=None):
        pmfs = torch.softmax(net(x), dim=2)
        q_values = (pmfs * atoms).sum(2)
        if action is None:
            action = torch.argmax(q_values, 1)
        return action, pmfs[torch.arange(len(x)), action]

    obs, _ = envs.reset(seed=seed)
    autoreset = False
    updates = 0
    for global_step in range(steps):
        frac = min(1.0, global_step / config.eps_decay_steps)
        epsilon = config.eps_start + frac * (config.eps_end - config.eps_start)
        if random.random() < epsilon:
            actions = np.array([envs.single_action_space.sample()])
        else:
            with torch.no_grad():
                actions, _ = get_action(q_network, torch.as_tensor(obs))
            actions = actions.numpy()
        next_obs, rewards, terminations, truncations, _ = envs.step(actions)
        if not autoreset:  # gymnasium 1.x next-step autoreset: skip the reset transition
            rb_obs[pos], rb_next[pos], rb_act[pos] = obs[0], next_obs[0], actions[0]
            rb_rew[pos], rb_done[pos] = rewards[0], float(terminations[0])
            pos = (pos + 1) % cap
            size = min(size + 1, cap)
        autoreset = bool(terminations[0] or truncations[0])
        obs = next_obs
        if global_step > config.learning_starts and global_step % config.train_every == 0:
            idx = np.random.randint(0, size, size=config.batch_size)
            b_obs, b_next = torch.as_tensor(rb_obs[idx]), torch.as_tensor(rb_next[idx])
            b_act, b_rew = torch.as_tensor(rb_act[idx]), torch.as_tensor(rb_rew[idx])
            b_done = torch.as_tensor(rb_done[idx])
            with torch.no_grad():
                _, next_pmfs = get_action(target_network, b_next)
                next_atoms = b_rew.unsqueeze(1) + config.gamma * atoms * (1 - b_done.unsqueeze(1))
                target_pmfs = cleanrl_projection(next_atoms, next_pmfs, config.v_min, config.v_max,
                                                 config.n_atoms)
            _, old_pmfs = get_action(q_network, b_obs, b_act)
            loss = (-(target_pmfs * old_pmfs.clamp(min=1e-5, max=1 - 1e-5).log()).sum(-1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
        if global_step % config.target_update_every == 0:
            target_network.load_state_dict(q_network.state_dict())
    envs.close()
    return updates


def loop_rows(config: BenchConfig) -> list[dict]:
    from fixpoint_rl.deep.config import apply_overrides
    from fixpoint_rl.deep.registry import get_trainer
    from fixpoint_rl.deep.runtime import run_trainer

    # steady state: CPU seconds of a long run minus those of a short one (set-up, the warm-up
    # before learning starts, the final checkpoint and the ε decay are excluded alike)
    short, long_ = config.pick((1_000, 3_000), (2_000, 8_000), (5_000, 30_000))
    repeats = 5 if not config.full else 7
    base = apply_overrides(get_trainer("c51").config("minatar"), [
        "learning_starts=500", "eps_decay_steps=500", "buffer_size=20000", "log_every=1000",
    ])
    folder = tempfile.mkdtemp(prefix="perf_c51_")

    def ours(cfg, steps):
        cfg = apply_overrides(cfg, [f"steps={steps}"])
        out = os.path.join(folder, f"run{time.perf_counter_ns()}")
        return run_trainer("c51", cfg, seed=config.seed, out_dir=out, progress=False,
                           checkpoint_every=10 * steps)["updates"]

    variants = {
        "ours (4 envs)": lambda steps: ours(base, steps),
        "cleanrl-style (1 env)": lambda steps: cleanrl_style_loop(base, steps, config.seed),
    }
    if not config.quick:
        variants["ours (1 env)"] = lambda steps: ours(apply_overrides(base, ["num_envs=1"]), steps)
    names = list(variants)
    cpu = {k: [] for k in names}
    updates = {}
    torch.set_num_threads(1)
    for r in range(repeats + 1):
        for name in names[r % len(names):] + names[: r % len(names)]:
            spent = []
            for steps in (short, long_):
                c0 = time.process_time()
                updates[name] = variants[name](steps)
                spent.append(time.process_time() - c0)
            if r > 0:  # round 0 is the warm-up
                cpu[name].append(spent[1] - spent[0])
    baseline = float(np.median(cpu["cleanrl-style (1 env)"]))
    rows = []
    for name in names:
        t = float(np.median(cpu[name]))
        claim = holds = None
        if name == "ours (4 envs)":
            claim, holds = f"env steps/s ≥ {GOAL_LOOP:g}× CleanRL-style", bool(baseline / t >= GOAL_LOOP)
        rows.append({"algorithm": f"loop: {name}",
                     "problem": f"MinAtar Breakout, steps {short}→{long_} (steady state)",
                     "claim": claim, "holds": holds, "speedup_x": baseline / t,
                     "env_steps_per_s": (long_ - short) / t, "updates": updates[name],
                     "cpu_s": t, "repeats": repeats})
    return rows


def run(config: BenchConfig) -> pd.DataFrame:
    torch.set_num_threads(1)
    table = pd.DataFrame(projection_rows(config) + loop_rows(config))
    table.attrs["machine"] = machine_header()
    return table


DISPLAY_COLUMNS = ["speedup_x", "us_per_call", "env_steps_per_s", "updates"]
