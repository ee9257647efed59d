"""``fixpoint train gpo|online_gpo|nash_md_pg|rlhf``: preference optimisation of small LMs on
preference games lifted to token responses, with exact evaluation.

The task is a ``fixpoint_rl.envs.preference`` game as an ``EnumerableTask`` (one response token per
action, ``preference_game_task``), or (``game="length_quality"``) free text of at most
``max_length`` characters written as ``max_length`` tokens ending at '.', judged by the intransitive
length/quality judge (``preference_models.length_quality_task``: 3^L responses); its preference
matrix is the golden judge. For multi-token responses the Nash-MD-PG target below is the
sequence-level-mixture fixed point, which the per-token mixture misses slightly for β ∈ (0, 1)
(exactly at β = 0 and 1). The reference π_ref is the LM at initialisation (seeded), which is also
the behaviour policy of the offline data.
Because every response can be enumerated, each evaluation reports exact numbers: KL(π_θ‖π_ref),
the golden win rate P(π_θ ≻ π_ref), and KL(target‖π_θ) to the algorithm's tabular fixed point.

Algorithms (one step each):

* ``gpo`` — offline GPO (Tang et al. 2024, arXiv 2402.05749) on ``n_pairs`` triples drawn once from
  π_ref × π_ref and labelled by the golden P; minibatches of ``batch_size``. Target (squared loss):
  the empirical-loss minimiser (``tabular.gpo.solve_gpo``).
* ``online_gpo`` — online GPO (Tang et al. 2024, arXiv 2405.08448): ``batch_size`` fresh on-policy
  pairs per step labelled by the golden P (``labels="golden"``) or by the Bradley–Terry proxy
  (``labels="proxy"``). Target (squared): π ∝ π_ref·exp(2P(y ≻ π)/β).
* ``nash_md_pg`` — Nash-MD-PG (Munos et al. 2024, arXiv 2312.00886, §7): y ~ π_θ, y′ from the
  per-token geometric mixture with weight ``mixture`` (0 self-play, 1 best response) or, with
  ``ema_decay`` set, from an EMA copy of θ (Nash-EMA); τ = ``beta``. Target (mixture opponent):
  π ∝ π_ref·exp(P(y ≻ π^β)/τ).
* ``rlhf`` — policy gradient with KL (τ = ``beta``) on a Bradley–Terry reward model fitted to the
  offline pairs (``preference_models.RewardModel``); baseline the leave-one-out mean of the other
  rewards in the batch (``baseline``; the plain batch mean would bias the gradient). Target:
  π ∝ π_ref·exp(r/τ) with the fitted r.

Checkpoints hold the policy, the optimiser, the reference, the EMA opponent, the reward model,
the dataset and the generators: a killed run continues bitwise on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from ...envs import preference as games
from ...envs.checks import check_int, check_scalar
from ...tabular.core.mirror import geometric_mixture_log, kl_divergence, softmax
from ...tabular.gpo import empirical_pair_weights, sample_preference_dataset, solve_gpo
from ...tabular.online_offline import regularized_nash_ipo
from ..config import Config
from ..registry import TrainerSpec
from ..runtime import Run, generator_state, restore_generator
from .gpo import enumerable_pair_batch, enumerate_policy, gpo_lm_loss
from .models import build_lm
from .nash_md import ema_update, sampled_nash_md_pg_loss, sampled_rlhf_pg_loss
from .online_offline import online_gpo_loss
from .preference_models import RewardModel, bradley_terry_loss, length_quality_task
from .tasks import preference_game_task
from .tokenizer import build_char_tokenizer

__all__ = ["ALGORITHMS", "PreferenceConfig", "TRAINERS", "build_game_task", "fixed_point", "train"]

ALGORITHMS = ("gpo", "online_gpo", "nash_md_pg", "rlhf")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreferenceConfig(Config):
    """Settings of the LM preference-optimisation loop (every field can be set with ``--set``)."""

    algorithm: Literal["gpo", "online_gpo", "nash_md_pg", "rlhf"] = "gpo"
    """Which algorithm."""
    game: Literal["three_type_cycle", "dice", "rock_paper_scissors", "random",
                  "length_quality"] = "three_type_cycle"
    """Golden preference: an envs.preference game (random: random_game(n_actions, seed, 'mixture')), or
    length_quality: free text of ≤ max_length characters judged by the length/quality judge."""
    max_length: int = 3
    """length_quality: tokens per response (text = characters before the first '.')."""
    target_length: int = 2
    """length_quality: the length the judge's quality term prefers."""
    cyclic_weight: float = 0.6
    """length_quality: weight λ of the judge's cyclic (intransitive) term on lengths mod 3."""
    eps: float = 0.1
    """ε of three_type_cycle."""
    n_actions: int = 5
    """Responses of the random game."""
    model: str = "nano"
    """LM preset."""
    dtype: Literal["float32", "float64"] = "float32"
    """Parameter dtype."""
    beta: float = 0.2
    """GPO β (inside f; IPO's τ = β/2), or τ of Nash-MD-PG / RLHF."""
    kind: str = "squared"
    """GPO loss (a GPO kind or alias: dpo, ipo, slic)."""
    margin: Literal["sum", "mean"] = "sum"
    """GPO margins: summed or per-token-averaged log-ratios."""
    labels: Literal["golden", "proxy"] = "golden"
    """online_gpo labeller: the golden P or the BT proxy fitted to the offline pairs."""
    mixture: float = 0.125
    """Nash-MD-PG opponent mixture β ∈ [0, 1] (0 self-play, 1 best response)."""
    ema_decay: float | None = None
    """Nash-EMA: opponent = EMA of the policy parameters with this decay (None: mixture opponent)."""
    n_pairs: int = 512
    """Offline dataset size (gpo; also the reward model's training data)."""
    baseline: Literal["leave_one_out", "batch_mean", "none"] = "leave_one_out"
    """rlhf reward baseline: mean of the other rewards in the batch (unbiased), of all of them
    (biased: scales the reward gradient by (B − 1)/B), or none."""
    rm_steps: int = 150
    """Adam steps of the Bradley–Terry reward model (rlhf, online_gpo with proxy labels)."""
    steps: int = 200
    """Training steps."""
    batch_size: int = 32
    """Pairs (gpo, online_gpo) or prompts (nash_md_pg, rlhf) per step."""
    lr: float = 3e-3
    """Adam learning rate."""
    log_every: int = 10
    """Steps between CSV rows (each with exact metrics)."""

    def validate(self) -> None:
        for name in ("n_actions", "n_pairs", "steps", "batch_size", "log_every", "rm_steps"):
            check_int(name, getattr(self, name), low=1)
        check_int("n_actions", self.n_actions, low=2, high=26)
        check_int("max_length", self.max_length, low=1, high=5)
        check_int("target_length", self.target_length, low=0)
        check_scalar("cyclic_weight", self.cyclic_weight, low=0.0, high=1.0)
        check_scalar("eps", self.eps, low=-1.0 / 3.0, high=1.0 / 3.0)
        for name in ("beta", "lr"):
            check_scalar(name, getattr(self, name), low=0.0, low_inclusive=False)
        check_scalar("mixture", self.mixture, low=0.0, high=1.0)
        if self.algorithm == "rlhf" and self.baseline == "leave_one_out" and self.batch_size < 2:
            raise ValueError(f"batch_size must be ≥ 2 for the leave-one-out baseline, got {self.batch_size}")
        if self.ema_decay is not None:
            check_scalar("ema_decay", self.ema_decay, low=0.0, high=1.0)
        from ...tabular.core.preference_losses import check_kind

        check_kind(self.kind)


def build_game_task(config: PreferenceConfig, seed: int):
    """The golden preference game of ``config`` as an ``EnumerableTask``."""
    if config.game == "three_type_cycle":
        game = games.three_type_cycle(config.eps)
    elif config.game == "dice":
        game = games.dice()
    elif config.game == "rock_paper_scissors":
        game = games.rock_paper_scissors()
    elif config.game == "length_quality":
        return length_quality_task(config.max_length, target_length=config.target_length,
                                   cyclic_weight=config.cyclic_weight)
    else:
        game = games.random_game(config.n_actions, seed=seed, kind="mixture")
    return preference_game_task(game)


def fixed_point(mu: np.ndarray, pref: np.ndarray, tau: float, beta: float, iterations: int = 100_000,
                damping: float = 0.05) -> np.ndarray:
    """π ∝ μ·exp(P·π^β/τ), π^β ∝ π^(1−β)μ^β (Nash-MD-PG's stationary point), [N] (damped iteration)."""
    pi = mu.copy()
    for _ in range(iterations):
        mix = np.exp(geometric_mixture_log(np.log(pi), np.log(mu), beta))
        target = softmax(np.log(mu) + pref @ mix / tau)
        if np.max(np.abs(target - pi)) < 1e-13:
            return target
        pi = (1.0 - damping) * pi + damping * target
    return pi


def _fit_reward_model(config, seed, tokenizer, task, dataset, device):
    reward_model = RewardModel(config.model, len(tokenizer), seed + 7, dtype=config.dtype).to(device)
    batch = enumerable_pair_batch(task, tokenizer, *dataset, device=device)
    optimizer = torch.optim.Adam(reward_model.parameters(), lr=3e-3)
    for _ in range(config.rm_steps):
        chosen = reward_model(batch.prompt_ids, batch.prompt_mask, batch.chosen_ids, batch.chosen_mask)
        rejected = reward_model(batch.prompt_ids, batch.prompt_mask, batch.rejected_ids, batch.rejected_mask)
        loss = bradley_terry_loss(chosen, rejected)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    reward_model.eval().requires_grad_(False)
    return reward_model


def _response_rewards(reward_model, task, tokenizer, device) -> np.ndarray:
    prompt_ids, prompt_mask = task.prompt_batch(tokenizer, device=device)
    responses = task.all_response_ids(tokenizer).to(device)
    X, N = prompt_ids.shape[0], responses.shape[0]
    with torch.no_grad():
        r = reward_model(prompt_ids.repeat_interleave(N, 0), prompt_mask.repeat_interleave(N, 0), responses.repeat(X, 1),
                         torch.ones_like(responses.repeat(X, 1)))
    return r.view(X, N).double().cpu().numpy()


def train(config: PreferenceConfig, run: Run) -> dict[str, Any]:
    """Train for ``config.steps`` steps; returns the final exact metrics."""
    device = run.device
    tokenizer = build_char_tokenizer()
    task = build_game_task(config, run.seed)
    pref = task.pref
    model = build_lm(config.model, len(tokenizer), run.seed, dtype=config.dtype, device=device).train()
    reference = build_lm(config.model, len(tokenizer), run.seed, dtype=config.dtype, device=device)
    reference.eval().requires_grad_(False)
    allowed = task.response_token_ids(tokenizer).to(device)
    prompt_ids, prompt_mask = task.prompt_batch(tokenizer, device=device)
    with torch.no_grad():
        ref_probs = enumerate_policy(reference, task, tokenizer).double().exp().cpu().numpy()
    ref_probs /= ref_probs.sum(-1, keepdims=True)  # float32 models: renormalise in float64
    data_rng = np.random.default_rng([run.seed, 0xDA7A])
    dataset = sample_preference_dataset(pref, ref_probs, config.n_pairs, data_rng, task.context_weights)
    reward_model = None
    if config.algorithm == "rlhf" or (config.algorithm == "online_gpo" and config.labels == "proxy"):
        reward_model = _fit_reward_model(config, run.seed, tokenizer, task, dataset, device)
    rewards = None if reward_model is None else _response_rewards(reward_model, task, tokenizer, device)
    label_pref = pref
    if config.algorithm == "online_gpo" and config.labels == "proxy":
        label_pref = 0.5 * (1.0 + np.tanh(0.5 * (rewards[:, :, None] - rewards[:, None, :])))
    opponent = None
    if config.algorithm == "nash_md_pg" and config.ema_decay is not None:
        opponent = copy.deepcopy(model).eval().requires_grad_(False)

    # the algorithm's tabular fixed point (None where no closed form applies)
    target = None
    if config.algorithm == "gpo" and config.kind in ("squared", "ipo"):
        weights = empirical_pair_weights(*dataset, task.n_contexts, task.n_responses)
        target = solve_gpo(ref_probs, weights, config.beta, "squared").final
    elif config.algorithm == "online_gpo" and config.kind in ("squared", "ipo"):
        target = regularized_nash_ipo(ref_probs, label_pref, config.beta)
    elif config.algorithm == "nash_md_pg" and config.ema_decay is None:
        target = np.stack([fixed_point(ref_probs[x], pref[x], config.beta, config.mixture)
                           for x in range(task.n_contexts)])
    elif config.algorithm == "rlhf":
        target = softmax(np.log(ref_probs) + rewards / config.beta)

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    sample_generator = torch.Generator(device=device).manual_seed(run.seed + 1)
    batch_generator = torch.Generator().manual_seed(run.seed + 2)
    label_rng = np.random.default_rng([run.seed, 3])
    full = enumerable_pair_batch(task, tokenizer, *dataset, device=device)
    start = 0
    state = run.checkpointer.latest()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if opponent is not None:
            opponent.load_state_dict(state["opponent"])
        restore_generator(sample_generator, state["sample_generator"])
        restore_generator(batch_generator, state["batch_generator"])
        restore_generator(label_rng, state["label_rng"])
        start = state["step"]

    def metrics() -> dict[str, Any]:
        with torch.no_grad():
            policy = enumerate_policy(model, task, tokenizer).double().exp().cpu().numpy()
        policy /= policy.sum(-1, keepdims=True)
        nu = task.context_weights
        out = {"kl_to_ref": float(nu @ kl_divergence(policy, ref_probs)),
               "win_rate_vs_ref": float(nu @ np.einsum("xi,xij,xj->x", policy, pref, ref_probs))}
        if target is not None:
            out["kl_target"] = float(nu @ kl_divergence(target, policy))
        return out

    if start == 0:
        run.log.log(0, **metrics())  # the reference's own numbers (step 0)
    pref_t = torch.tensor(np.array(pref), dtype=torch.float64, device=device)
    rewards_t = None if rewards is None else torch.tensor(rewards, device=device)
    for step in range(start + 1, config.steps + 1):
        if config.algorithm == "gpo":
            index = torch.randint(config.n_pairs, (config.batch_size,), generator=batch_generator).to(device)
            batch = type(full)(*(getattr(full, f.name)[index] for f in dataclasses.fields(full)))
            loss, _ = gpo_lm_loss(model, reference, batch, config.beta, config.kind, margin=config.margin,
                                  allowed_tokens=allowed)
        elif config.algorithm == "online_gpo":
            loss, _, _ = online_gpo_loss(model, reference, task, tokenizer, config.batch_size, beta=config.beta,
                                         kind=config.kind, margin=config.margin, generator=sample_generator,
                                         label_pref=label_pref, label_generator=label_rng)
        else:
            contexts = torch.multinomial(torch.tensor(task.context_weights), config.batch_size, replacement=True,
                                         generator=batch_generator).to(device)
            ids, mask = prompt_ids[contexts], prompt_mask[contexts]

            def indices(tokens):
                return torch.as_tensor(task.indices_of(tokens, tokenizer), device=device)

            if config.algorithm == "nash_md_pg":
                loss = sampled_nash_md_pg_loss(
                    model, reference, ids, mask, task.length, lambda a, b: pref_t[contexts, indices(a), indices(b)],
                    config.beta, mixture=config.mixture, opponent=opponent, generator=sample_generator,
                    allowed_tokens=allowed).loss
            else:
                loss = sampled_rlhf_pg_loss(model, reference, ids, mask, task.length,
                                            lambda a: rewards_t[contexts, indices(a)], config.beta,
                                            generator=sample_generator, allowed_tokens=allowed,
                                            baseline=config.baseline).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if opponent is not None:
            ema_update(opponent, model, config.ema_decay)
        if step % config.log_every == 0 or step == config.steps:
            run.log.log(step, loss=float(loss.detach()), **metrics())
        if run.checkpointer.due(step) or step == config.steps:
            run.checkpointer.save(step, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "opponent": None if opponent is None else opponent.state_dict(),
                "sample_generator": generator_state(sample_generator),
                "batch_generator": generator_state(batch_generator),
                "label_rng": generator_state(label_rng),
            })
    return {"steps": config.steps, **metrics()}


# ----------------------------------------------------------------------------- presets
def _preset(algorithm: str, **changes: Any):
    def make() -> PreferenceConfig:
        return PreferenceConfig(algorithm=algorithm, **changes)

    make.__doc__ = f"{algorithm}: {changes}"
    return make


_QUICK = dict(steps=8, batch_size=8, n_pairs=64, rm_steps=20, log_every=4)


def _presets(algorithm: str) -> dict[str, Any]:
    presets = {"default": _preset(algorithm), "quick": _preset(algorithm, **_QUICK)}
    if algorithm == "nash_md_pg":
        presets["self_play"] = _preset(algorithm, mixture=0.0)
        presets["best_response"] = _preset(algorithm, mixture=1.0)
        presets["ema"] = _preset(algorithm, ema_decay=0.99)
    if algorithm == "online_gpo":
        presets["proxy"] = _preset(algorithm, labels="proxy")
    if algorithm == "gpo":
        presets["dpo"] = _preset(algorithm, kind="logistic", beta=0.4)
    presets["gpu"] = _preset(algorithm, model="base", steps=500, batch_size=64, n_pairs=4096)
    return presets


_DESCRIPTIONS = {
    "gpo": "offline GPO (DPO/IPO/SLiC/...) on a fixed dataset of pairs; exact KL to the tabular optimum",
    "online_gpo": "online GPO/IPO with golden or BT-proxy labels; exact KL to the regularised Nash",
    "nash_md_pg": "Nash-MD-PG with a per-token mixture opponent (SP/mixture/BR) or Nash-EMA",
    "rlhf": "KL-regularised policy gradient on a Bradley-Terry reward model (NLHF's RLHF baseline)",
}

TRAINERS = [
    TrainerSpec(name=name, description=_DESCRIPTIONS[name], config_cls=PreferenceConfig, presets=_presets(name),
                train=train, checkpoint_every=50)
    for name in ALGORITHMS
]
