"""The C51 family in one readable training loop: ``fixpoint train c51|nstep_c51|retrace_c51|qlambda_c51``.

CleanRL's shape (Huang et al. 2022, JMLR 23(274), ``c51_atari.py``), written here: vectorised
environments, ε-greedy acting, a sequence replay returning n-step windows with the behaviour
probabilities μ(·|x), a target network copied every ``target_update_every`` environment steps,
Adam. The target is the sampled multi-step distributional target of
``fixpoint_rl.tabular.core.multistep`` (one projection per branch, next-action mixture folded
before projecting, scatter projection):

* ``c51`` — C51 (Bellemare, Dabney, Munos 2017, arXiv:1707.06887), n = 1, greedy π;
* ``nstep_c51`` — C51 with the uncorrected n-step return (Hessel et al. 2018, arXiv:1710.02298);
* ``retrace_c51`` — distributional Retrace, c = λ min(1, π/μ) (Munos et al. 2016,
  arXiv:1606.02647; Gruslys et al. 2018, arXiv:1704.04651);
* ``qlambda_c51`` — Q(λ)-C51, c = λ with no behaviour probabilities and target policy
  π_α = απ + (1 − α)μ (Tang, Rowland, Munos, Ávila Pires, Dabney, AISTATS 2026); its targets
  are signed, so its default loss is the Cramér loss (see ``losses``).

Protocol recorded in every run header (config fields, and ``summary["protocol"]``):
frames are environment frames (MinAtar: 1 per step; ALE: ``frameskip`` per agent step);
``steps`` counts agent steps summed over the vector environments; training returns
(``train_return``: mean undiscounted return of the episodes finished in each logging interval,
with the training ε and the environment's sticky actions) are the learning curves, as in
MinAtar's and Dopamine's published curves; optional evaluation every ``eval_every`` steps runs
``eval_episodes`` episodes with ε = ``eval_epsilon`` on fresh environments seeded from
(seed, step), same sticky actions, at most ``eval_max_steps`` steps each.

Reproducibility: everything is drawn from ``run.seed``; on CPU a run killed with SIGKILL and
restarted resumes bitwise for MinAtar (the checkpoint holds networks, optimiser, replay, the
pickled vector environment and every generator). ``AtariVectorEnv`` cannot be pickled, so an
ALE run resumes with freshly reset emulators, and the ``atari`` preset does not checkpoint its
1M-entry replay (``checkpoint_replay=False``: a resumed ALE run refills it) — documented
deviations from the bitwise resume of MinAtar runs.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from typing import Any, Literal

import numpy as np
import torch

from fixpoint_rl.envs.checks import check_choice, check_int, check_scalar
from fixpoint_rl.tabular.core.categorical import CategoricalSupport

from ..config import Config
from ..registry import TrainerSpec
from ..runtime import generator_state, restore_generator
from .losses import LOSSES, categorical_loss
from .networks import TORSOS, build_network
from .replay import SequenceReplay
from .targets import window_targets

__all__ = ["C51Config", "TRAINERS", "build_learner", "learner_update", "make_vector_env", "train"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class C51Config(Config):
    """Settings of the C51-family loop (``--set name=value`` for any field)."""

    env: Literal["minatar", "atari"] = "minatar"
    """Environment family: MinAtar (CPU) or ALE via AtariVectorEnv (GPU)."""
    game: str = "Breakout"
    """MinAtar game (Asterix, Breakout, Freeway, Seaquest, SpaceInvaders) or ALE ROM (Pong, ...)."""
    steps: int = 100_000
    """Agent steps, summed over the vector environments."""
    num_envs: int = 4
    """Vector environments stepped together (one batched forward pass to act)."""
    sticky_action_prob: float = 0.1
    """Repeat-action probability (MinAtar default 0.1; Dopamine/ALE v5 0.25; CleanRL 0)."""
    difficulty_ramping: bool = True
    """MinAtar difficulty ramping."""
    episodic_life: bool = False
    """ALE only: end training episodes on life loss."""
    noop_max: int = 30
    """ALE only: up to this many no-ops after reset."""
    torso: Literal["minatar_dqn", "dopamine_minatar", "nature_cnn", "one_hot"] = "minatar_dqn"
    """Network torso (see ``networks``)."""
    n_atoms: int = 51
    """Atoms M."""
    v_min: float = -100.0
    """Lowest atom."""
    v_max: float = 100.0
    """Highest atom."""
    gamma: float = 0.99
    """Discount γ."""
    window: int = 1
    """Window length n (1 = one-step C51)."""
    trace: Literal["q_lambda", "retrace", "tree_backup", "n_step"] = "n_step"
    """Trace of the multi-step target ("n_step" = uncorrected; ignored when window = 1)."""
    lam: float = 1.0
    """λ of the trace."""
    alpha: float = 1.0
    """Target policy π_α = α·greedy + (1 − α)·μ (1 = greedy)."""
    loss: Literal["cross_entropy", "cramer", "clip_renormalise"] = "cross_entropy"
    """Loss against the (possibly signed) target (see ``losses``)."""
    projection: Literal["per_branch", "per_step"] = "per_branch"
    """Target projection: once per branch (the sampled target) or once per step."""
    lr: float = 2.5e-4
    """Adam step size."""
    adam_eps: float = 3.125e-4
    """Adam ε (Dopamine's 0.01/32)."""
    max_grad_norm: float = 0.0
    """Clip the gradient norm to this (0: no clipping)."""
    batch_size: int = 32
    """Windows per update."""
    buffer_size: int = 100_000
    """Replay capacity (entries, split over the environment streams)."""
    learning_starts: int = 1_000
    """Agent steps before the first update."""
    train_every: int = 4
    """Agent steps per update."""
    target_update_every: int = 1_000
    """Agent steps between target-network copies."""
    eps_start: float = 1.0
    """Initial ε of ε-greedy acting."""
    eps_end: float = 0.01
    """Final ε."""
    eps_decay_steps: int = 100_000
    """Agent steps of the linear ε decay."""
    eval_every: int = 0
    """Agent steps between evaluations (0: none)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    eval_epsilon: float = 0.001
    """ε during evaluation."""
    eval_max_steps: int = 27_000
    """Cap on an evaluation episode's agent steps."""
    log_every: int = 1_000
    """Agent steps between CSV rows."""
    checkpoint_replay: bool = True
    """Save the replay buffer in checkpoints (needed for a bitwise resume; off for 1M-entry ALE
    replays, whose resume then starts from an empty buffer)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Network dtype."""

    def validate(self) -> None:
        check_int("steps", self.steps, low=1)
        check_int("num_envs", self.num_envs, low=1)
        check_scalar("sticky_action_prob", self.sticky_action_prob, low=0.0, high=1.0,
                     high_inclusive=False)
        check_int("noop_max", self.noop_max, low=0)
        check_choice("torso", self.torso, TORSOS)
        check_int("n_atoms", self.n_atoms, low=2)
        check_scalar("v_min", self.v_min)
        check_scalar("v_max", self.v_max)
        if not self.v_max > self.v_min:
            raise ValueError(f"v_max must exceed v_min={self.v_min}, got {self.v_max}")
        check_scalar("gamma", self.gamma, low=0.0, high=1.0, high_inclusive=False)
        check_int("window", self.window, low=1)
        check_scalar("lam", self.lam, low=0.0, high=1.0)
        check_scalar("alpha", self.alpha, low=0.0, high=1.0)
        check_choice("loss", self.loss, LOSSES)
        check_scalar("lr", self.lr, low=0.0, low_inclusive=False)
        check_scalar("adam_eps", self.adam_eps, low=0.0, low_inclusive=False)
        check_scalar("max_grad_norm", self.max_grad_norm, low=0.0)
        check_int("batch_size", self.batch_size, low=1)
        check_int("buffer_size", self.buffer_size, low=1)
        check_int("learning_starts", self.learning_starts, low=0)
        check_int("train_every", self.train_every, low=1)
        check_int("target_update_every", self.target_update_every, low=1)
        check_scalar("eps_start", self.eps_start, low=0.0, high=1.0)
        check_scalar("eps_end", self.eps_end, low=0.0, high=1.0)
        check_int("eps_decay_steps", self.eps_decay_steps, low=1)
        check_int("eval_every", self.eval_every, low=0)
        check_int("eval_episodes", self.eval_episodes, low=1)
        check_scalar("eval_epsilon", self.eval_epsilon, low=0.0, high=1.0)
        check_int("eval_max_steps", self.eval_max_steps, low=1)
        check_int("log_every", self.log_every, low=1)
        if self.buffer_size // self.num_envs < self.window + 2:
            raise ValueError(
                f"buffer_size must hold window + 2 entries per environment, got {self.buffer_size}"
            )
        if self.torso == "one_hot":
            raise ValueError("torso 'one_hot' is for tabular problems (tests), not for training runs")


# ----------------------------------------------------------------------------- presets
def _minatar(**changes: Any) -> C51Config:
    """MinAtar on one CPU thread: Dopamine's MinAtar settings (51 atoms on [−100, 100], Adam
    2.5e-4 / ε 3.125e-4, replay 100k, 1000 warm-up steps, update every 4 steps, target every
    1000) with MinAtar's own sticky actions (0.1) and the official MinAtar-DQN torso."""
    return C51Config(**changes)


def _atari(**changes: Any) -> C51Config:
    """ALE on a GPU with Dopamine's C51 hyper-parameters (c51.gin): 51 atoms on [−10, 10],
    γ 0.99, Adam 2.5e-4 / ε 3.125e-4, replay 1M, 20k warm-up steps, update every 4 agent steps,
    target every 8000, ε → 0.01 over 250k steps, sticky actions 0.25, evaluation with ε 0.001
    every 250k steps; Nature CNN; 50M frames = 12.5M agent steps (Dopamine runs 200M)."""
    base = dict(
        env="atari", game="Pong", steps=12_500_000, num_envs=8, sticky_action_prob=0.25,
        episodic_life=False, noop_max=0, torso="nature_cnn", v_min=-10.0, v_max=10.0,
        buffer_size=1_000_000, learning_starts=20_000, target_update_every=8_000,
        eps_decay_steps=250_000, eval_every=250_000, eval_episodes=10, log_every=10_000,
        checkpoint_replay=False,
    )
    base.update(changes)
    return C51Config(**base)


_ALGORITHMS: dict[str, dict[str, Any]] = {
    "c51": dict(window=1, trace="n_step", loss="cross_entropy"),
    "nstep_c51": dict(window=3, trace="n_step", loss="cross_entropy"),
    "retrace_c51": dict(window=3, trace="retrace", lam=1.0, loss="cross_entropy"),
    "qlambda_c51": dict(window=3, trace="q_lambda", lam=0.8, alpha=0.8, loss="cramer"),
}


def _presets(algorithm: str) -> dict[str, Any]:
    settings = _ALGORITHMS[algorithm]
    return {
        "minatar": functools.partial(_minatar, **settings),
        "atari": functools.partial(_atari, **settings),
        "quick": functools.partial(_minatar, steps=20_000, eps_decay_steps=10_000, **settings),
    }


# ----------------------------------------------------------------------------- environments
def make_vector_env(config: C51Config, seed: int, num_envs: int | None = None):
    """(vector env, protocol dict, obs shape, A, frames per agent step); reset with ``seed``."""
    num_envs = config.num_envs if num_envs is None else num_envs
    if config.env == "minatar":
        import gymnasium

        from fixpoint_rl.envs.gym_minatar import MinAtarEnv

        factory = functools.partial(MinAtarEnv, config.game,
                                    sticky_action_prob=config.sticky_action_prob,
                                    difficulty_ramping=config.difficulty_ramping)
        env = gymnasium.vector.SyncVectorEnv([factory] * num_envs)  # autoreset: next step
        protocol = {**factory().protocol(), "num_envs": num_envs, "autoreset": "next_step"}
        frames = 1
    else:
        from fixpoint_rl.envs.gym_atari import make_atari_vector_env

        env = make_atari_vector_env(config.game, num_envs,
                                    sticky_action_prob=config.sticky_action_prob,
                                    episodic_life=config.episodic_life, noop_max=config.noop_max)
        protocol = dict(env.protocol)
        frames = protocol["frames_per_step"]
    obs, _ = env.reset(seed=seed % 2**31)  # emulators take 31-bit seeds
    return env, obs, protocol, tuple(env.single_observation_space.shape), \
        int(env.single_action_space.n), frames


# ----------------------------------------------------------------------------- learner
def build_learner(config: C51Config, obs_shape, n_actions: int, device, *, n_states=None):
    """(support, online net, target net, Adam) — weights from the global torch RNG."""
    support = CategoricalSupport(config.v_min, config.v_max, config.n_atoms)
    dtype = getattr(torch, config.dtype)
    atoms = torch.as_tensor(support.atoms, dtype=dtype)
    online = build_network(config.torso, obs_shape, n_actions, atoms, n_states=n_states).to(device)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    # fused Adam: one kernel for all parameters (CPU and CUDA; same update rule)
    fused = device.type in ("cpu", "cuda") if isinstance(device, torch.device) else True
    optimizer = torch.optim.Adam(online.parameters(), lr=config.lr, eps=config.adam_eps,
                                 fused=fused)
    return support, online, target, optimizer


def learner_update(config: C51Config, support, online, target, optimizer, batch,
                   *, weights: torch.Tensor | None = None, target_policy=None,
                   targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One Adam step on a batch of windows; returns detached ``loss`` and ``negative_mass``.

    ``weights`` [B] (optional) weight the per-window losses (exact expectations over enumerated
    windows in the tabular check); ``target_policy`` [B, n, A] overrides the greedy/mixed π;
    ``targets`` [B, M] reuses targets already computed with the current target network.
    """
    if targets is None:
        targets = window_targets(target, batch, support=support, gamma=config.gamma,
                                 lam=config.lam, trace=config.trace, alpha=config.alpha,
                                 projection=config.projection, target_policy=target_policy)
    logits = online(batch["obs"][:, 0])  # [B, A, M]
    taken = batch["actions"][:, 0]
    logits = logits[torch.arange(logits.shape[0], device=logits.device), taken]
    per_row = categorical_loss(config.loss, logits, targets, support)
    loss = per_row.mean() if weights is None else (weights * per_row).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(online.parameters(), config.max_grad_norm)
    optimizer.step()
    return {"loss": loss.detach(), "negative_mass": (-targets).clamp(min=0).sum(-1).mean()}


def epsilon_at(config: C51Config, step: int) -> float:
    """Linear decay from eps_start to eps_end over eps_decay_steps agent steps."""
    frac = min(1.0, step / config.eps_decay_steps)
    return config.eps_start + frac * (config.eps_end - config.eps_start)


def act(online, obs: torch.Tensor, epsilon: float, rng: np.random.Generator):
    """ε-greedy actions [E] and the behaviour rows μ(·|x) [E, A] (numpy)."""
    with torch.no_grad():
        greedy = online.q_values(obs).argmax(dim=-1).cpu().numpy()
    E, A = greedy.shape[0], online.n_actions
    explore = rng.random(E) < epsilon
    random_actions = rng.integers(0, A, size=E)
    actions = np.where(explore, random_actions, greedy)
    behaviour = np.full((E, A), epsilon / A, dtype=np.float32)
    behaviour[np.arange(E), greedy] += 1.0 - epsilon
    return actions, behaviour


def evaluate(config: C51Config, online, device, seed: int) -> float:
    """Mean return of ``eval_episodes`` ε_eval-greedy episodes (fresh, seeded environments)."""
    env, obs, *_ = make_vector_env(config, seed, num_envs=config.eval_episodes)
    rng = np.random.default_rng([seed, 0xE7A1])
    returns = np.zeros(config.eval_episodes)
    done = np.zeros(config.eval_episodes, dtype=bool)
    for _ in range(config.eval_max_steps):
        actions, _ = act(online, torch.as_tensor(obs, device=device), config.eval_epsilon, rng)
        obs, reward, terminated, truncated, _ = env.step(actions)
        returns += np.where(done, 0.0, reward)
        done |= terminated | truncated
        if done.all():
            break
    env.close()
    return float(returns.mean())


# ----------------------------------------------------------------------------- training
def train(config: C51Config, run) -> dict[str, Any]:
    """The loop (module docstring). Returns the final training/evaluation returns."""
    device = run.device
    env, obs, protocol, obs_shape, n_actions, frames_per_step = make_vector_env(config, run.seed)
    E = config.num_envs
    support, online, target, optimizer = build_learner(config, obs_shape, n_actions, device)
    replay = SequenceReplay(E, config.buffer_size, obs_shape, n_actions, config.window)
    rng = np.random.default_rng([run.seed, 0xC51])  # acting and replay sampling
    pads = np.zeros(E, dtype=bool)  # entry written at the next step is a pad (episode ended)
    episode_return = np.zeros(E)
    finished: list[float] = []  # returns of episodes finished in the current log interval
    losses: list[torch.Tensor] = []
    negative: list[torch.Tensor] = []
    step, updates, episodes, last_return, last_eval = 0, 0, 0, math.nan, math.nan

    state = run.checkpointer.latest()
    if state is not None:
        online.load_state_dict(state["online"])
        target.load_state_dict(state["target"])
        optimizer.load_state_dict(state["optimizer"])
        if state["replay"] is not None:
            replay.load_state_dict(state["replay"])
        restore_generator(rng, state["rng"])
        if state["env"] is not None:
            env.close()
            env = state["env"]
            obs = state["obs"]
            pads = state["pads"]
            episode_return = state["episode_return"]
        else:  # ALE: emulators cannot be pickled; restart them (documented deviation)
            obs, _ = env.reset(seed=(run.seed + state["step"]) % 2**31)
        finished = list(state["finished"])
        losses = [torch.as_tensor(v) for v in state["losses"]]
        negative = [torch.as_tensor(v) for v in state["negative"]]
        step, updates, episodes = state["step"], state["updates"], state["episodes"]
        last_return, last_eval = state["last_return"], state["last_eval"]

    while step < config.steps:
        epsilon = epsilon_at(config, step)
        actions, behaviour = act(online, torch.as_tensor(obs, device=device), epsilon, rng)
        next_obs, reward, terminated, truncated, _ = env.step(actions)
        replay.add(obs, actions, reward, terminated, truncated, behaviour, pads)
        live = ~pads
        episode_return += np.where(live, reward, 0.0)
        ended = live & (terminated | truncated)
        for e in np.flatnonzero(ended):
            finished.append(float(episode_return[e]))
            episode_return[e] = 0.0
            episodes += 1
        pads = ended
        obs = next_obs
        previous, step = step, step + E

        # updates: one every train_every agent steps once learning has started
        for boundary in range(previous + 1, step + 1):
            if boundary >= config.learning_starts and boundary % config.train_every == 0 \
                    and replay.can_sample():
                batch = {k: torch.as_tensor(v, device=device)
                         for k, v in replay.sample(config.batch_size, rng).items()}
                out = learner_update(config, support, online, target, optimizer, batch)
                losses.append(out["loss"])
                negative.append(out["negative_mass"])
                updates += 1
            if boundary % config.target_update_every == 0:
                target.load_state_dict(online.state_dict())

        crossed = range(previous + 1, step + 1)
        if config.eval_every and any(s % config.eval_every == 0 for s in crossed):
            last_eval = evaluate(config, online, device, (run.seed * 1_000_003 + step) % 2**31)
        if any(s % config.log_every == 0 for s in crossed) or step >= config.steps:
            if finished:
                last_return = float(np.mean(finished))
            metrics: dict[str, Any] = {
                "frames": step * frames_per_step,
                "train_return": float(np.mean(finished)) if finished else None,
                "episodes": episodes,
                "epsilon": epsilon,
                "updates": updates,
                "loss": float(torch.stack(losses).mean()) if losses else None,
                "target_negative_mass": float(torch.stack(negative).mean()) if negative else None,
            }
            if config.eval_every:
                metrics["eval_return"] = last_eval
            run.log.log(step, **metrics)
            finished, losses, negative = [], [], []
        if any(run.checkpointer.due(s) for s in crossed) or step >= config.steps:
            picklable = config.env == "minatar"
            run.checkpointer.save(step, {
                "online": online.state_dict(),
                "target": target.state_dict(),
                "optimizer": optimizer.state_dict(),
                "replay": replay.state_dict() if config.checkpoint_replay else None,
                "rng": generator_state(rng),
                "env": env if picklable else None,
                "obs": obs, "pads": pads, "episode_return": episode_return,
                "finished": finished, "losses": [v.item() for v in losses],
                "negative": [v.item() for v in negative],
                "updates": updates, "episodes": episodes,
                "last_return": last_return, "last_eval": last_eval,
            })
    env.close()
    return {
        "steps": step, "frames": step * frames_per_step, "updates": updates, "episodes": episodes,
        "final_train_return": last_return, "final_eval_return": last_eval,
        "protocol": {**protocol, "returns": "training returns (ε-greedy, sticky as above)",
                     "eval_epsilon": config.eval_epsilon, "eval_episodes": config.eval_episodes,
                     "eval_every": config.eval_every, "frames": "environment frames"},
    }


def _spec(name: str, description: str) -> TrainerSpec:
    return TrainerSpec(name=name, description=description, config_cls=C51Config,
                       presets=_presets(name), train=train, steps_field="steps",
                       checkpoint_every=10_000)


TRAINERS = [
    _spec("c51", "C51 (one-step categorical DQN) on MinAtar / ALE"),
    _spec("nstep_c51", "C51 with the uncorrected n-step return"),
    _spec("retrace_c51", "distributional Retrace C51 (uses behaviour probabilities)"),
    _spec("qlambda_c51", "off-policy distributional Q(λ)-C51 (signed targets, no μ needed)"),
]
