"""Deep MTPO and MTPO-τ: multi-turn preference optimisation of a language model on dialogue games
(Shani et al., NeurIPS 2024, arXiv 2405.14655, §4.1; tabular counterpart ``fixpoint_rl.tabular.multiturn``).

``fixpoint train mtpo --set algorithm=mtpo|mtpo_tau|rlhf_multi|rlhf_single``.

The game is a ``fixpoint_rl.envs.dialogue.DialogueGame`` played as text
(``fixpoint_rl.deep.llm.tasks.DialogueTextGame``): the prompt is ``"c<c>:"``, each turn the LM
writes one action token (softmax restricted to the A action characters) and the environment
appends one observation token naming the drawn successor. Every play has exactly H turns, so a
batch of transcripts is a rectangular [B, P + 2H] token array (prompts left padded) and ONE
forward pass gives the action logits z_θ(x_h, ·) [B, H, A] at every decision position and the
turn-level value V_φ(x_h) [B, H] (a small MLP head on the LM's detached last hidden state: the
value loss never moves the policy, so the policy gradient is exactly the one written below).

Objective (MTPO §3, the regularised preference game against a fixed opponent π′):
J(θ) = E_{τ~π_θ} P(x_{H+1} ≻ π′) − α KL_p(π_θ‖μ), with KL_p = E Σ_h KL(π_θ‖μ)[x_h] (Lemma 3.1).
Per trajectory the surrogate loss is

    L(θ) = Σ_h [ −Â_h · log π_θ(y_h | x_h) + α · KL(π_θ‖μ)[x_h] ]        (paper §4.1)

with the per-turn KL computed exactly over the A actions (differentiable), and Â from GAE(λ)
(γ = 1) on the rewards r_h = −α KL(π‖μ)[x_{h+1}] (h < H−1, the future KL, detached) and
r_{H−1} = the terminal signal. With λ = 1 the expected gradient is exactly −∇J: at every state x
it is −d_π(x) (diag π − ππᵀ)(Q^{π,π′}_α − α log(π/μ))(x, ·) pulled back through ∂z_θ/∂θ, i.e. the
mirror-descent direction of MTPO eq. (1)–(2) through the softmax Jacobian (tested by enumeration).
Its stationary points with π′ = π_θ are π ∝ μ exp(Q^{π,π}_α/α), the Nash equilibrium π*_α
(Lemma 3.2). The MD proximity term KL(π_θ‖π_{θ_{t−1}}) is dropped, as in the paper.

Algorithms (terminal signal of a trajectory τ):
* ``mtpo`` — self-play: two trajectories per context from π_θ, τ gets P(x ≻ x′) (or a Bernoulli
  draw of it) and τ′ gets 1 − that; both update (Table 4: 2 generations, 2 updates per context).
* ``mtpo_tau`` — the opponent τ′ is drawn from the per-token geometric mixture
  π^β ∝ π_θ^{1−β} μ^β (MTPO-τ / multi-turn Nash-MD, β = ``mixture_beta``); only τ ~ π_θ updates
  (τ′ is off-policy). Fixed point π ∝ μ exp(Q^{π,π^β}_α/α) (π*_α only at β = 0).
* ``rlhf_multi`` — multi-turn RLHF: a Bradley–Terry reward r̂ on final states fitted to
  μ-sampled comparisons (``fixpoint_rl.tabular.multiturn.multiturn_rlhf``'s fit) or the game's
  own reward (``reward_source="game"``, Car Dealer's sale price); one trajectory per context.
* ``rlhf_single`` — single-turn RLHF: every turn is a bandit with the turn-level BT reward
  r̂(x_h, y_h) of ``tabular.multiturn.single_turn_rlhf`` (recovered from its policy as
  α log(π/μ), exact up to a per-state constant); Â_h = r̂(x_h, y_h) − V_φ(x_h), no bootstrap.

The reference μ is the game's reference policy (the paper's SFT policy), looked up by state; the
LM is first distilled towards it (``sft_steps`` of cross-entropy on μ-sampled dialogues).
``estimator="expected"`` replaces sampling by exact enumeration of every transcript (weights =
trajectory probabilities, terminal signal = its expectation): the oracle of the tests.

Shapes: B transcripts, H turns, A actions, P prompt tokens, X contexts, F final states.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from ...envs.checks import check_choice, check_int, check_scalar
from ..config import Config
from ..registry import TrainerSpec
from ..runtime import Run, generator_state, restore_generator

__all__ = [
    "ALGORITHMS",
    "MTPOConfig",
    "DialoguePolicy",
    "Transcripts",
    "build_game",
    "rollout",
    "enumerate_transcripts",
    "decision_outputs",
    "gae",
    "turn_rewards",
    "mtpo_loss",
    "policy_table",
    "final_distribution",
    "win_rate",
    "expected_reward",
    "MTPOState",
    "prepare",
    "train_step",
    "evaluate",
    "train",
    "TRAINER",
]

ALGORITHMS = ("mtpo", "mtpo_tau", "rlhf_multi", "rlhf_single")
MAX_TRANSCRIPTS = 20_000  # exact enumeration cap (leaves of the transcript tree)


# ------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class MTPOConfig(Config):
    """Settings of deep MTPO / MTPO-τ and the RLHF baselines (every field: ``--set name=value``)."""

    algorithm: Literal["mtpo", "mtpo_tau", "rlhf_multi", "rlhf_single"] = "mtpo"
    """Terminal signal and opponent (see the module docstring)."""
    game: Literal["tree", "layered", "education", "car_dealer"] = "tree"
    """Dialogue game: tree_game, random_layered_game, education_dialogue or car_dealer."""
    horizon: int = 2
    """H turns."""
    num_actions: int = 3
    """A actions (tree / layered games; Education Dialogue has 5, Car Dealer one per price)."""
    num_contexts: int = 2
    """X contexts (tree / layered: contexts; education: topics; car_dealer: segments)."""
    game_seed: int = 0
    """Seed of the game's generator (the game is fixed across training seeds)."""
    alpha: float = 0.1
    """α, KL coefficient to the reference μ."""
    mixture_beta: float = 0.125
    """β of MTPO-τ's opponent mixture π^β ∝ π_θ^{1−β} μ^β."""
    lam: float = 0.95
    """GAE λ (γ = 1)."""
    feedback: Literal["bernoulli", "probability"] = "bernoulli"
    """Terminal preference: one Bernoulli comparison per pair, or its probability."""
    estimator: Literal["sampled", "expected"] = "sampled"
    """Sampled rollouts, or the exact expectation over all transcripts (small games; MTPO-τ
    needs a per-state policy table there: trees and Education Dialogue)."""
    reward_source: Literal["bradley_terry", "game"] = "bradley_terry"
    """RLHF reward: a BT model fitted on μ-sampled pairs, or the game's final reward."""
    reward_pairs: int = 2000
    """μ-sampled comparisons for the BT fits (0: the population limit)."""
    batch_contexts: int = 8
    """Contexts per step (drawn from ρ); MTPO rolls out 2 transcripts per context."""
    steps: int = 300
    """Training steps."""
    lr: float = 2e-3
    """AdamW step size of the policy LM."""
    value_lr: float = 3e-3
    """AdamW step size of the value head."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """Step sizes constant, or decayed linearly to 0 at ``steps`` (a stable last iterate)."""
    adam_beta1: float = 0.0
    """Adam's first-moment decay. 0 (no momentum, RMSProp-like steps): momentum makes the
    self-play gradient field of the preference game circle around π*_α instead of converging."""
    normalize_advantages: bool = False
    """Divide Â by its batch standard deviation (the paper batch-normalises)."""
    model: Literal["nano", "micro", "small", "base", "large"] = "nano"
    """LM preset of ``fixpoint_rl.deep.llm.models``."""
    dtype: Literal["float32", "float64"] = "float32"
    """Parameter dtype (float64 for exactness checks)."""
    sft_steps: int = 100
    """Distillation steps towards μ before RL (0: start from the random initialisation)."""
    log_every: int = 10
    """Steps between CSV rows."""
    eval_every: int = 50
    """Steps between exact evaluations (and at the last step)."""

    def validate(self) -> None:
        check_int("horizon", self.horizon, low=1, high=4)
        check_int("num_actions", self.num_actions, low=2, high=26)
        check_int("num_contexts", self.num_contexts, low=1, high=9)
        check_int("game_seed", self.game_seed, low=0)
        check_scalar("alpha", self.alpha, low=0.0, low_inclusive=False)
        check_scalar("mixture_beta", self.mixture_beta, low=0.0, high=1.0)
        check_scalar("lam", self.lam, low=0.0, high=1.0)
        check_int("reward_pairs", self.reward_pairs, low=0)
        check_int("batch_contexts", self.batch_contexts, low=1)
        check_int("steps", self.steps, low=1)
        check_scalar("lr", self.lr, low=0.0, low_inclusive=False)
        check_scalar("value_lr", self.value_lr, low=0.0, low_inclusive=False)
        check_scalar("adam_beta1", self.adam_beta1, low=0.0, high=1.0, high_inclusive=False)
        check_int("sft_steps", self.sft_steps, low=0)
        check_int("log_every", self.log_every, low=1)
        check_int("eval_every", self.eval_every, low=1)
        if self.reward_source == "game" and self.algorithm == "rlhf_multi" and self.game not in ("car_dealer", "layered"):
            raise ValueError(f"reward_source='game' needs a game with a final reward (car_dealer), got game={self.game!r}")


def _preset(**changes):
    def make() -> MTPOConfig:
        return MTPOConfig(**changes)

    return make


PRESETS = {
    "default": _preset(),
    "cpu": _preset(steps=300, batch_contexts=8),
    "quick": _preset(steps=20, sft_steps=10, eval_every=10, log_every=5),
    "education": _preset(lr_schedule="linear", game="education", horizon=2, num_contexts=1, alpha=0.05, steps=400,
                         sft_steps=150, batch_contexts=16, normalize_advantages=True),
    "car_dealer": _preset(lr_schedule="linear", game="car_dealer", horizon=3, num_actions=4, num_contexts=2, alpha=0.05,
                          steps=400, sft_steps=150, batch_contexts=16, normalize_advantages=True),
    "gpu": _preset(model="small", game="education", horizon=3, num_contexts=2, alpha=0.02,
                   steps=5000, batch_contexts=64, normalize_advantages=True, sft_steps=1000,
                   eval_every=500, log_every=50),
}


def build_game(config: MTPOConfig):
    """The ``DialogueGame`` of a config."""
    from ...envs import dialogue

    if config.game == "tree":
        return dialogue.tree_game(num_contexts=config.num_contexts, horizon=config.horizon,
                                  num_actions=config.num_actions, seed=config.game_seed)
    if config.game == "layered":
        return dialogue.random_layered_game(num_contexts=config.num_contexts, horizon=config.horizon,
                                            num_actions=config.num_actions, states_per_layer=3,
                                            seed=config.game_seed, with_reward=config.reward_source == "game")
    if config.game == "education":
        return dialogue.education_dialogue(horizon=min(config.horizon, 3), num_topics=config.num_contexts,
                                           seed=config.game_seed)
    prices = tuple(1.0 + 0.5 * k for k in range(config.num_actions))
    return dialogue.car_dealer(horizon=config.horizon, prices=prices, num_segments=config.num_contexts,
                               seed=config.game_seed)


# ------------------------------------------------------------------------------------------
# policy with a turn-level value head
# ------------------------------------------------------------------------------------------
class DialoguePolicy(torch.nn.Module):
    """A causal LM (``lm``) plus a turn-level value head V_φ on its detached last hidden state.

    ``action_ids`` [A]: token ids of the action characters (the policy's softmax runs over them).
    """

    def __init__(self, lm, action_ids: torch.Tensor, hidden: int = 64):
        super().__init__()
        self.lm = lm
        width = int(lm.config.hidden_size)
        dtype = next(lm.parameters()).dtype
        self.value_head = torch.nn.Sequential(
            torch.nn.Linear(width, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        ).to(dtype=dtype, device=next(lm.parameters()).device)
        self.register_buffer("action_ids", action_ids.clone().long(), persistent=False)


@dataclasses.dataclass
class Transcripts:
    """A batch of complete plays.

    Attributes:
      ids, mask: [B, P + 2H] tokens (prompt left padded) and attention mask.
      prompt_len: P.
      states: [B, H + 1] numpy int, x_1 … x_{H+1} (global state ids; the last is final).
      actions: [B, H] numpy int.
      contexts: [B] numpy int.
      weights: [B] float64 — 1/B for samples, the exact probability ρ(c)·p(τ) for enumeration.
      transition_probs: [B] numpy float, Π_h p(x_{h+1}|x_h, y_h) (enumeration only; else None).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    prompt_len: int
    states: np.ndarray
    actions: np.ndarray
    contexts: np.ndarray
    weights: np.ndarray
    transition_probs: np.ndarray | None = None


def _prompt_batch(tokenizer, text, contexts, device):
    from .tokenizer import encode_prompts

    return encode_prompts(tokenizer, [text.prompt(int(c)) for c in contexts], device=device)


def _obs_ids(tokenizer, observations):
    from .tasks import OBSERVATION_CHARS

    return tokenizer.convert_tokens_to_ids([OBSERVATION_CHARS[int(o)] for o in observations])


def decision_outputs(policy: DialoguePolicy, ids, mask, prompt_len: int, turns: int):
    """One forward pass: (log π_θ(·|x_h) [B, turns, A], V_φ(x_h) [B, turns]).

    Position P − 1 + 2h holds the last token of transcript x_h (it predicts action h)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    attention = mask if bool((mask == 0).any()) else None
    out = policy.lm.model(input_ids=ids, attention_mask=attention, position_ids=positions)
    hidden = out.last_hidden_state
    index = torch.tensor([prompt_len - 1 + 2 * h for h in range(turns)], device=ids.device)
    h_dec = hidden[:, index]
    logits = policy.lm.lm_head(h_dec)[..., policy.action_ids]
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    values = policy.value_head(h_dec.detach()).squeeze(-1)
    return logp, values


def _log_ref(game, states) -> torch.Tensor:
    return torch.from_numpy(np.log(np.asarray(game.reference)[np.asarray(states)]))


def rollout(policy: DialoguePolicy, tokenizer, text, contexts, generator: torch.Generator,
            rng: np.random.Generator, *, source: str = "policy", beta: float = 0.0) -> Transcripts:
    """Play B dialogues turn by turn. ``source``: ``"policy"`` (π_θ), ``"mixture"`` (per-token
    geometric mixture softmax((1−β) log π_θ + β log μ), MTPO-τ's opponent) or ``"reference"`` (μ)."""
    check_choice("source", source, ("policy", "mixture", "reference"))
    game = text.game
    contexts = np.asarray(contexts, dtype=np.int64)
    device = next(policy.parameters()).device
    ids, mask = _prompt_batch(tokenizer, text, contexts, device)
    P, H, B = ids.shape[1], game.horizon, contexts.size
    states = np.empty((B, H + 1), dtype=np.int64)
    actions = np.empty((B, H), dtype=np.int64)
    states[:, 0] = text.start(contexts)
    for h in range(H):
        log_mu = _log_ref(game, states[:, h]).to(device)
        if source == "reference":
            logp = log_mu
        else:
            with torch.no_grad():
                logp, _ = decision_outputs(policy, ids, mask, ids.shape[1], 1)
            logp = logp[:, 0].to(torch.float64)
            if source == "mixture":
                logp = torch.log_softmax((1.0 - beta) * logp + beta * log_mu, dim=-1)
        # drawn on the CPU with the trainer's CPU generator (same draws on every device)
        drawn = torch.multinomial(logp.exp().cpu(), 1, generator=generator).squeeze(-1).numpy()
        nxt, obs = text.step(states[:, h], drawn, rng)
        actions[:, h], states[:, h + 1] = drawn, nxt
        turn = torch.stack([policy.action_ids.cpu()[torch.from_numpy(drawn)],
                            torch.tensor(_obs_ids(tokenizer, obs))], dim=1).to(device)
        ids = torch.cat([ids, turn], dim=1)
        mask = torch.cat([mask, torch.ones_like(turn)], dim=1)
    return Transcripts(ids, mask, P, states, actions, contexts, np.full(B, 1.0 / B))


def enumerate_transcripts(policy: DialoguePolicy, tokenizer, text) -> Transcripts:
    """Every complete transcript of every context (the transcript tree), with weights
    ρ(c)·Π_h p(x_{h+1}|x_h, y_h) (multiply by Π_h π(y_h|x_h) for trajectory probabilities)."""
    game = text.game
    A, H, X = game.num_actions, game.horizon, game.num_contexts
    starts, nxt, probs = (np.asarray(game.transition_starts), np.asarray(game.transition_next),
                          np.asarray(game.transition_probs))
    rows = [(c, [c], [], [], 1.0) for c in range(X)]  # context, states, actions, obs, p
    for _ in range(H):
        grown = []
        for c, sts, acts, obs, p in rows:
            for a in range(A):
                k = sts[-1] * A + a
                for j in range(starts[k + 1] - starts[k]):
                    q = probs[starts[k] + j]
                    if q > 0:
                        grown.append((c, sts + [int(nxt[starts[k] + j])], acts + [a], obs + [j], p * q))
        rows = grown
        if len(rows) > MAX_TRANSCRIPTS:
            raise ValueError(f"game has more than {MAX_TRANSCRIPTS} transcripts to enumerate ({game.name})")
    device = next(policy.parameters()).device
    contexts = np.array([r[0] for r in rows], dtype=np.int64)
    ids, mask = _prompt_batch(tokenizer, text, contexts, device)
    action_ids = policy.action_ids.cpu().numpy()
    turns = []
    for _, _, acts, obs, _ in rows:
        seq = []
        for a, o in zip(acts, obs):
            seq += [int(action_ids[a])] + _obs_ids(tokenizer, [o])
        turns.append(seq)
    turn_ids = torch.tensor(turns, dtype=torch.long, device=device).view(len(rows), 2 * H)
    rho = np.asarray(game.context_probs)
    transition = np.array([r[4] for r in rows])
    return Transcripts(
        ids=torch.cat([ids, turn_ids], dim=1), mask=torch.cat([mask, torch.ones_like(turn_ids)], dim=1),
        prompt_len=ids.shape[1], states=np.array([r[1] for r in rows], dtype=np.int64),
        actions=np.array([r[2] for r in rows], dtype=np.int64), contexts=contexts,
        weights=rho[contexts] * transition, transition_probs=transition,
    )


# ------------------------------------------------------------------------------------------
# exact evaluation
# ------------------------------------------------------------------------------------------
def _trajectory_probs(policy, batch: Transcripts, table=None) -> np.ndarray:
    """[B] Π_h π(y_h|x_h) of enumerated transcripts (π = the LM, or ``table`` [N_dec, A])."""
    H = batch.actions.shape[1]
    if table is None:
        with torch.no_grad():
            logp, _ = decision_outputs(policy, batch.ids, batch.mask, batch.prompt_len, H)
        taken = logp.gather(-1, torch.from_numpy(batch.actions).to(logp.device)[..., None]).squeeze(-1)
        return taken.sum(-1).exp().to(torch.float64).cpu().numpy()
    return np.prod(np.asarray(table)[batch.states[:, :H], batch.actions], axis=1)


def final_distribution(policy, batch: Transcripts, game, table=None) -> np.ndarray:
    """[F] reach probabilities of the final states (conditional on their context) from an
    enumerated batch, under the LM policy (or a tabular ``table``)."""
    probs = _trajectory_probs(policy, batch, table) * batch.transition_probs
    d = np.zeros(game.num_final_states)
    np.add.at(d, batch.states[:, -1] - game.num_decision_states, probs)
    return d


def win_rate(game, d_a: np.ndarray, d_b: np.ndarray) -> float:
    """P(π_a ≻ π_b) = Σ_c ρ_c d_aᵀ P_c d_b from final-state distributions [F] (exact)."""
    total = 0.0
    for c in range(game.num_contexts):
        lo, hi = int(game.final_starts[c]), int(game.final_starts[c + 1])
        total += float(game.context_probs[c]) * float(d_a[lo:hi] @ game.preference_matrix(c) @ d_b[lo:hi])
    return total


def expected_reward(game, d: np.ndarray, reward: np.ndarray | None = None) -> float:
    """E r(x_{H+1}) = Σ_c ρ_c Σ_x d(x) r(x) (the game's final reward by default)."""
    r = np.asarray(game.final_reward if reward is None else reward)
    weights = np.asarray(game.context_probs)[np.asarray(game.state_context)[game.num_decision_states:]]
    return float(np.sum(weights * d * r))


def policy_table(policy: DialoguePolicy, tokenizer, text) -> np.ndarray:
    """The LM's per-state action distribution [N_dec, A] (float64), for games in which every
    decision state has exactly one transcript (trees, Education Dialogue); ``ValueError`` when a
    state is reachable by two transcripts (the LM policy is then not a state policy)."""
    game = text.game
    batch = enumerate_transcripts(policy, tokenizer, text)
    H = game.horizon
    with torch.no_grad():
        logp, _ = decision_outputs(policy, batch.ids, batch.mask, batch.prompt_len, H)
    probs = logp.exp().to(torch.float64).cpu().numpy()
    table = np.full((game.num_decision_states, game.num_actions), np.nan)
    seen: dict[int, bytes] = {}
    for b in range(batch.ids.shape[0]):
        for h in range(H):
            s = int(batch.states[b, h])
            prefix = batch.ids[b, : batch.prompt_len + 2 * h].cpu().numpy().tobytes()
            if s in seen and seen[s] != prefix:
                raise ValueError(f"game has state {s} reachable by two transcripts: no per-state policy table")
            seen[s] = prefix
            table[s] = probs[b, h]
    # float32 models: renormalise in float64 so the tabular checks (rows sum to 1 at 1e-9) hold
    table = table / table.sum(axis=1, keepdims=True)
    if np.isnan(table).any():  # unreachable decision states (zero-probability branches): μ there
        missing = np.isnan(table).any(axis=1)
        table[missing] = np.asarray(game.reference)[missing]
    return table


# ------------------------------------------------------------------------------------------
# advantages and loss
# ------------------------------------------------------------------------------------------
def gae(rewards: torch.Tensor, values: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(λ) with γ = 1 and V(x_{H+1}) = 0 (Schulman et al. 2016, arXiv 1506.02438, eq. 16):
    δ_h = r_h + V_{h+1} − V_h, Â_h = Σ_l λ^l δ_{h+l}; returns (Â [B, H], V̂ = Â + V [B, H])."""
    lam = check_scalar("lam", lam, low=0.0, high=1.0)
    if rewards.shape != values.shape or rewards.ndim != 2:
        raise ValueError(f"values must match rewards' [B, H] shape {tuple(rewards.shape)}, got {tuple(values.shape)}")
    H = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for h in range(H - 1, -1, -1):
        following = values[:, h + 1] if h + 1 < H else torch.zeros_like(running)
        delta = rewards[:, h] + following - values[:, h]
        running = delta + lam * running
        advantages[:, h] = running
    return advantages, advantages + values


def turn_rewards(terminal: torch.Tensor, state_kl: torch.Tensor, alpha: float) -> torch.Tensor:
    """r_h = −α KL(π‖μ)[x_{h+1}] for h < H − 1 and r_{H−1} = terminal [B] (the current state's KL
    is the loss's explicit term, so the return from x_h is the signal minus the FUTURE KL)."""
    rewards = torch.zeros_like(state_kl)
    rewards[:, :-1] = -alpha * state_kl[:, 1:]
    rewards[:, -1] = terminal
    return rewards


def mtpo_loss(logp: torch.Tensor, log_ref: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
              weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """Σ_b w_b Σ_h [−Â_{b,h} log π_θ(y_{b,h}|x_{b,h}) + α KL(π_θ‖μ)[x_{b,h}]] (paper §4.1).

    logp, log_ref: [B, H, A]; actions [B, H] long; advantages [B, H] (detached); weights [B]."""
    taken = logp.gather(-1, actions[..., None]).squeeze(-1)
    kl = (logp.exp() * (logp - log_ref)).sum(-1)
    per_turn = -advantages.detach() * taken + alpha * kl
    return (weights[:, None] * per_turn).sum()


# ------------------------------------------------------------------------------------------
# training state
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class MTPOState:
    config: MTPOConfig
    game: Any
    text: Any
    tokenizer: Any
    policy: DialoguePolicy
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    rng: np.random.Generator
    reward: np.ndarray | None  # [F] multi-turn reward, or [N_dec, A] turn-level reward
    nash: np.ndarray | None  # π*_α when the game has per-state transcripts and is small
    step: int = 0
    sft_loss: float = float("nan")


def _fit_rewards(config: MTPOConfig, game, seed: int):
    from ...tabular.multiturn import multiturn_rlhf, single_turn_rlhf

    pairs = None if config.reward_pairs == 0 else config.reward_pairs
    if config.algorithm == "rlhf_multi":
        if config.reward_source == "game":
            return np.asarray(game.final_reward)
        return np.asarray(multiturn_rlhf(game, config.alpha, n_pairs=pairs, seed=seed).extras["reward"])
    if config.algorithm == "rlhf_single":
        per_state = None if pairs is None else max(pairs // game.num_decision_states, 1)
        pi = single_turn_rlhf(game, config.alpha, signal="continuation", n_pairs=per_state, seed=seed).final
        # π ∝ μ exp(r̂/α) per state, so α log(π/μ) is r̂ up to a per-state constant
        return config.alpha * (np.log(pi) - np.log(np.asarray(game.reference)))
    return None


def prepare(config: MTPOConfig, seed: int, device: Any = "cpu") -> MTPOState:
    """Game, tokenizer, policy (distilled towards μ for ``sft_steps``), optimiser, generators."""
    from ...tabular.multiturn import multiturn_regularized_nash
    from .models import build_lm
    from .tasks import OBSERVATION_CHARS, dialogue_text_game
    from .tokenizer import build_char_tokenizer

    config.validate()
    game = build_game(config)
    text = dialogue_text_game(game)
    alphabet = "".join(dict.fromkeys("c:0123456789" + text.action_chars + OBSERVATION_CHARS))
    tokenizer = build_char_tokenizer(alphabet)
    lm = build_lm(config.model, len(tokenizer), seed, dtype=config.dtype, device=device)
    action_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(text.action_chars)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        policy = DialoguePolicy(lm, action_ids).to(device)
    policy.train()
    optimizer = torch.optim.AdamW([
        {"params": policy.lm.parameters(), "lr": config.lr},
        {"params": policy.value_head.parameters(), "lr": config.value_lr},
    ], betas=(config.adam_beta1, 0.999), weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng([seed, 0x3170])
    nash = None
    if game.num_decision_states * game.num_actions <= 5000 and config.game in ("tree", "education"):
        nash = multiturn_regularized_nash(game, config.alpha)
    if config.lr_schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(1.0 - t / config.steps, 0.0))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    state = MTPOState(config, game, text, tokenizer, policy, optimizer, scheduler, generator, rng,
                      _fit_rewards(config, game, seed), nash)
    if config.sft_steps:
        state.sft_loss = _distill_reference(state)
    return state


def _distill_reference(state: MTPOState) -> float:
    """``sft_steps`` AdamW steps of cross-entropy H(μ(·|x_h), π_θ(·|x_h)) on μ-sampled dialogues
    (the paper's SFT policy is the reference; here μ is known exactly, so its full distribution
    at each visited state is the target). Uses the state's own generators."""
    config, game = state.config, state.game
    optimizer = torch.optim.AdamW(state.policy.lm.parameters(), lr=config.lr)
    loss = torch.tensor(float("nan"))
    for _ in range(config.sft_steps):
        contexts = state.rng.choice(game.num_contexts, size=config.batch_contexts, p=game.context_probs)
        batch = rollout(state.policy, state.tokenizer, state.text, contexts, state.generator, state.rng,
                        source="reference")
        logp, _ = decision_outputs(state.policy, batch.ids, batch.mask, batch.prompt_len, game.horizon)
        mu = torch.from_numpy(np.asarray(game.reference)[batch.states[:, :-1]]).to(logp)
        loss = -(mu * logp).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def _terminal_signals(state: MTPOState, batch: Transcripts, opponent_finals: np.ndarray | None,
                      opponent_d: np.ndarray | None) -> np.ndarray:
    """[B] terminal signal of each transcript (see the module docstring)."""
    config, game = state.config, state.game
    finals = batch.states[:, -1]
    if config.algorithm == "rlhf_multi":
        return state.reward[finals - game.num_decision_states]
    if opponent_d is not None:  # expected: P(x ≻ π′) with π′'s exact final distribution
        n_dec = game.num_decision_states
        out = np.empty(finals.size)
        for b, (x, c) in enumerate(zip(finals.tolist(), batch.contexts.tolist())):
            lo, hi = int(game.final_starts[c]), int(game.final_starts[c + 1])
            out[b] = game.preference_matrix(c)[x - n_dec - lo] @ opponent_d[lo:hi]
        return out
    p = state.text.preference(finals, opponent_finals)
    if config.feedback == "probability":
        return p
    return (state.rng.random(p.size) < p).astype(np.float64)


def train_step(state: MTPOState) -> dict[str, float]:
    """One update: roll out (or enumerate), score, GAE, one AdamW step on policy + value loss."""
    config, game, policy = state.config, state.game, state.policy
    H, alpha = game.horizon, config.alpha
    expected = config.estimator == "expected"
    if expected:
        batch = enumerate_transcripts(policy, state.tokenizer, state.text)
        opponent_d = None
        if config.algorithm in ("mtpo", "mtpo_tau"):
            if config.algorithm == "mtpo":
                opponent_d = final_distribution(policy, batch, game)
            else:
                opponent_d = final_distribution(policy, batch, game, table=_mixture_table(state, batch))
        terminal = _terminal_signals(state, batch, None, opponent_d) if config.algorithm != "rlhf_single" else None
    else:
        contexts = state.rng.choice(game.num_contexts, size=config.batch_contexts, p=game.context_probs)
        batch = rollout(policy, state.tokenizer, state.text, contexts, state.generator, state.rng)
        terminal = None
        if config.algorithm == "mtpo":
            other = rollout(policy, state.tokenizer, state.text, contexts, state.generator, state.rng)
            first = _terminal_signals(state, batch, other.states[:, -1], None)
            batch = _concat(batch, other)
            terminal = np.concatenate([first, 1.0 - first])
        elif config.algorithm == "mtpo_tau":
            other = rollout(policy, state.tokenizer, state.text, contexts, state.generator, state.rng,
                            source="mixture", beta=config.mixture_beta)
            terminal = _terminal_signals(state, batch, other.states[:, -1], None)
        elif config.algorithm == "rlhf_multi":
            terminal = _terminal_signals(state, batch, None, None)
    logp, values = decision_outputs(policy, batch.ids, batch.mask, batch.prompt_len, H)
    log_ref = _log_ref(game, batch.states[:, :H]).to(logp)
    actions = torch.from_numpy(batch.actions).to(logp.device)
    with torch.no_grad():
        kl = (logp.exp() * (logp - log_ref)).sum(-1)
        v = values.detach().to(logp.dtype)
        if config.algorithm == "rlhf_single":
            r = torch.from_numpy(state.reward[batch.states[:, :H], batch.actions]).to(logp)
            advantages, returns = r - v, r
        else:
            rewards = turn_rewards(torch.from_numpy(terminal).to(logp), kl, alpha)
            advantages, returns = gae(rewards, v, config.lam)
        if expected:
            # exact trajectory probabilities ρ(c)·Π p·Π π_θ (detached): Σ_b w_b (·) is the expectation
            weights = torch.from_numpy(batch.weights).to(logp)
            weights = weights * torch.exp(logp.gather(-1, actions[..., None]).squeeze(-1).sum(-1))
        else:
            weights = torch.full((batch.ids.shape[0],), 1.0 / batch.ids.shape[0], dtype=logp.dtype,
                                 device=logp.device)
        if config.normalize_advantages:
            advantages = advantages / (advantages.std() + 1e-8)
    policy_loss = mtpo_loss(logp, log_ref, actions, advantages, weights, alpha)
    value_loss = (weights[:, None] * (returns.to(values.dtype) - values) ** 2).sum()
    state.optimizer.zero_grad(set_to_none=True)
    (policy_loss + value_loss).backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    out = {"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()),
           "kl_per_turn": float((weights[:, None] * kl).sum() / weights.sum() / 1.0)}
    if terminal is not None:
        out["terminal"] = float(np.mean(terminal))
    return out


def _mixture_table(state: MTPOState, batch: Transcripts) -> np.ndarray:
    """Per-state table of the geometric mixture π^β ∝ π_θ^{1−β} μ^β (games with per-state transcripts)."""
    table = policy_table(state.policy, state.tokenizer, state.text)
    beta = state.config.mixture_beta
    logits = (1 - beta) * np.log(table) + beta * np.log(np.asarray(state.game.reference))
    mix = np.exp(logits - logits.max(axis=1, keepdims=True))
    return mix / mix.sum(axis=1, keepdims=True)


def _concat(a: Transcripts, b: Transcripts) -> Transcripts:
    B = a.ids.shape[0] + b.ids.shape[0]
    return Transcripts(torch.cat([a.ids, b.ids]), torch.cat([a.mask, b.mask]), a.prompt_len,
                       np.concatenate([a.states, b.states]), np.concatenate([a.actions, b.actions]),
                       np.concatenate([a.contexts, b.contexts]), np.full(B, 1.0 / B))


def evaluate(state: MTPOState) -> dict[str, float]:
    """Exact metrics by enumerating transcripts: win rate against μ, expected reward (games with a
    reward), and KL_p(π*_α‖π_θ) when the game has a per-state policy table."""
    from ...tabular.multiturn import trajectory_kl

    game = state.game
    batch = enumerate_transcripts(state.policy, state.tokenizer, state.text)
    d = final_distribution(state.policy, batch, game)
    d_mu = final_distribution(None, batch, game, table=np.asarray(game.reference))
    out = {"win_rate_vs_reference": win_rate(game, d, d_mu)}
    if game.final_reward is not None:
        out["expected_reward"] = expected_reward(game, d)
    if state.nash is not None:
        table = policy_table(state.policy, state.tokenizer, state.text)
        out["kl_to_nash"] = trajectory_kl(game, state.nash, table)
        out["win_rate_vs_nash"] = win_rate(game, d, final_distribution(None, batch, game, table=state.nash))
    return out


# ------------------------------------------------------------------------------------------
# trainer
# ------------------------------------------------------------------------------------------
def train(config: MTPOConfig, run: Run) -> dict[str, Any]:
    """The ``fixpoint train mtpo`` entry point (checkpoint/resume via ``run.checkpointer``)."""
    state = prepare(config, run.seed, run.device)
    saved = run.checkpointer.latest()
    if saved is not None:
        state.policy.load_state_dict(saved["policy"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        restore_generator(state.generator, saved["generator"])
        restore_generator(state.rng, saved["rng"])
        state.step = saved["step"]
    last: dict[str, float] = {}
    if state.step == 0:
        state.policy.eval()
        run.log.log(0, sft_loss=state.sft_loss, **evaluate(state))
        state.policy.train()
    for step in range(state.step + 1, config.steps + 1):
        metrics = train_step(state)
        row: dict[str, float] = {}
        if step % config.log_every == 0 or step == config.steps:
            row.update(metrics)
        if step % config.eval_every == 0 or step == config.steps:
            last = evaluate(state)
            row.update(last)
        if row:
            run.log.log(step, **row)
        if run.checkpointer.due(step) or step == config.steps:
            run.checkpointer.save(step, {
                "policy": state.policy.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "generator": generator_state(state.generator),
                "rng": generator_state(state.rng),
            })
    return {"steps": config.steps, **last}


TRAINER = TrainerSpec(
    name="mtpo",
    description="deep MTPO / MTPO-τ and multi-/single-turn RLHF on dialogue games played as text",
    config_cls=MTPOConfig,
    presets=PRESETS,
    train=train,
    checkpoint_every=50,
)
