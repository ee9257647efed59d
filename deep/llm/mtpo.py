"""Deep MTPO and MTPO-τ: multi-turn preference optimisation of a language model on dialogue games
(Shani et al., NeurIPS 2024, arXiv 2405.14655, §4.1; tabular counterpart ``fixpoint_rl.tabular.multiturn``).

``fixpoint train mtpo --set algorithm=mtpo|mtpo_tau|mtpo_tau_nash_md|rlhf_multi|rlhf_single``.

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

Algorithms (terminal signal of each dialogue; x, x′ the final states of two dialogues):
* ``mtpo`` — self-play: two dialogues per context from π_θ, the first gets P(x ≻ x′) (or a
  Bernoulli draw of it) and the second 1 − that; both update (Table 4: 2 generations, 2 updates per context).
* ``mtpo_tau`` — MTPO-τ as the paper states it (§4 "MTPO-τ" and Table 4: 2 generations and 2
  updates per context): BOTH trajectories are drawn from the per-token geometric mixture
  π^τ ∝ π_θ^{1−τ} μ^τ (τ = ``mixture_beta``), each is scored against the other (P and 1 − P) and
  both update. The tabular step π_{t+1} ∝ π^τ_t exp(η Q^{π^τ_t,π^τ_t}_α) moves log π_t along
  Q^{π^τ,π^τ}_α − α log(π_t/μ) (τ = ηα), so the returns are the MIXTURE's (its future KL in the
  turn rewards, its value in V_φ) and the score term carries the per-turn ratio
  π_θ(y_h|x_h)/π^τ(y_h|x_h) (detached): the expected gradient in each state's logits is then
  −d_{π^τ}(x)(diag π_θ − π_θπ_θᵀ)(Q^{π^τ,π^τ}_α − α log(π_θ/μ))(x, ·), the direction
  of one tabular ``mtpo_tau`` step with constant ηα = τ through the softmax Jacobian (tested to
  1e-13). With a fixed τ its rest
  point is α log(π/μ) = Q^{π^τ,π^τ}_α + const, near π*_α for small τ (exactly π*_α as τ → 0).
* ``mtpo_tau_nash_md`` — the Nash-MD-PG form (Munos et al. 2024, arXiv 2312.00886, §7) lifted to
  dialogues, kept as a separate variant: one dialogue from π_θ, the opponent's from π^τ, only
  the first updates (the opponent's is off-policy). Rest point π ∝ μ exp(Q^{π,π^τ}_α/α) (π*_α only at τ = 0).
* ``rlhf_multi`` — multi-turn RLHF: a Bradley–Terry reward r̂ on final states fitted to
  μ-sampled comparisons of whole dialogues (``fit_multiturn_reward``; ``reward_pairs=0``: the
  population limit) or the game's own reward (``reward_source="game"``, Car Dealer's sale
  price); one trajectory per context.
* ``rlhf_single`` — single-turn RLHF: every turn is a bandit with a turn-level BT reward
  r̂(x_h, y_h) fitted per state to comparisons of two μ-drawn actions judged after μ-continuation
  of both branches (the paper's single-turn-value baseline, ``fit_single_turn_reward``);
  Â_h = r̂(x_h, y_h) − V_φ(x_h), no bootstrap. Both fits enumerate the transcript tree of μ
  (games with ≤ ``MAX_TRANSCRIPTS`` transcripts; larger games need ``prepare(..., reward=...)``).

Oracles are ARGUMENTS: this module never runs the tabular solvers (``fixpoint_rl.deep`` imports
torch, ``tabular.core`` and ``envs`` only, never Numba). ``prepare(config, seed, nash=π*_α)``
takes the regularised Nash policy [N_dec, A] computed by the caller (tests, figure scripts:
``fixpoint_rl.tabular.multiturn.multiturn_regularized_nash``); ``evaluate`` then reports
KL_p(π*_α‖π_θ) and P(π_θ ≻ π*_α), exactly, by enumerating transcripts. ``reward=`` replaces the
module's own reward fits (e.g. by the tabular ``multiturn_rlhf`` fit).

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

from ...envs.checks import as_float_array, check_choice, check_distribution, check_int, check_scalar
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
    "StepLosses",
    "step_losses",
    "policy_table",
    "final_distribution",
    "win_rate",
    "expected_reward",
    "trajectory_kl_from",
    "geometric_mixture",
    "fit_bradley_terry",
    "fit_multiturn_reward",
    "continuation_outcomes",
    "fit_single_turn_reward",
    "MTPOState",
    "prepare",
    "train_step",
    "evaluate",
    "train",
    "TRAINER",
]

ALGORITHMS = ("mtpo", "mtpo_tau", "mtpo_tau_nash_md", "rlhf_multi", "rlhf_single")
BT_L2 = 1e-3  # l2 of the Bradley–Terry fits (fixes the BT shift; unseen states stay at 0)
MAX_TRANSCRIPTS = 20_000  # exact enumeration cap (leaves of the transcript tree)


# ------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class MTPOConfig(Config):
    """Settings of deep MTPO / MTPO-τ and the RLHF baselines (every field: ``--set name=value``)."""

    algorithm: Literal["mtpo", "mtpo_tau", "mtpo_tau_nash_md", "rlhf_multi", "rlhf_single"] = "mtpo"
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
    """The paper's mixing τ of MTPO-τ's geometric mixture π^τ ∝ π_θ^{1−τ} μ^τ (Table 4 uses
    0.0375 with α = 0.0025)."""
    lam: float = 0.95
    """GAE λ (γ = 1)."""
    feedback: Literal["bernoulli", "probability"] = "bernoulli"
    """Terminal preference: one Bernoulli comparison per pair, or its probability."""
    estimator: Literal["sampled", "expected"] = "sampled"
    """Sampled rollouts, or the exact expectation over all transcripts (small games)."""
    reward_source: Literal["bradley_terry", "game"] = "bradley_terry"
    """RLHF reward: a BT model fitted on μ-sampled pairs, or the game's final reward."""
    reward_pairs: int = 2000
    """μ-sampled comparisons for the BT fits, in all (0: the population limit)."""
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
      step_probs: [B, H] numpy float, p(x_{h+1}|x_h, y_h) per turn (enumeration only; else None).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    prompt_len: int
    states: np.ndarray
    actions: np.ndarray
    contexts: np.ndarray
    weights: np.ndarray
    transition_probs: np.ndarray | None = None
    step_probs: np.ndarray | None = None


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
    rows = [(c, [c], [], [], 1.0, []) for c in range(X)]  # context, states, actions, obs, p, steps
    for _ in range(H):
        grown = []
        for c, sts, acts, obs, p, steps in rows:
            for a in range(A):
                k = sts[-1] * A + a
                for j in range(starts[k + 1] - starts[k]):
                    q = probs[starts[k] + j]
                    if q > 0:
                        grown.append((c, sts + [int(nxt[starts[k] + j])], acts + [a], obs + [j], p * q,
                                      steps + [float(q)]))
        rows = grown
        if len(rows) > MAX_TRANSCRIPTS:
            raise ValueError(f"game has more than {MAX_TRANSCRIPTS} transcripts to enumerate ({game.name})")
    device = next(policy.parameters()).device
    contexts = np.array([r[0] for r in rows], dtype=np.int64)
    ids, mask = _prompt_batch(tokenizer, text, contexts, device)
    action_ids = policy.action_ids.cpu().numpy()
    turns = []
    for _, _, acts, obs, _, _ in rows:
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
        step_probs=np.array([r[5] for r in rows], dtype=np.float64).reshape(len(rows), H),
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
# reward models of the RLHF baselines (Bradley–Terry fits on μ-sampled comparisons)
# ------------------------------------------------------------------------------------------
def fit_bradley_terry(wins: np.ndarray, l2: float = BT_L2) -> np.ndarray:
    """Batched Bradley–Terry fit (Bradley & Terry 1952): for every group g,
    r_g = argmin −Σ_ij W_gij log σ(r_gi − r_gj) / Σ_ij W_gij + (l2/2)‖r_g‖².

    ``wins`` [G, K, K] (W_gij = weight of "i beat j" in group g; padding rows/columns of zeros
    stay at r = 0). Strictly convex (Hessian ⪰ l2·I); solved by Newton's method with backtracking
    in float64 to a gradient of 1e-13; gradients and Hessian-vector products by torch autograd
    and the Newton systems by conjugate gradients (memory O(G·K²) for K up to thousands of final
    states; the objective is written once, here, and the tests check the fit against the tabular
    Newton fit of ``fixpoint_rl.tabular.multiturn``). Returns r [G, K] float64."""
    W = as_float_array("wins", wins, ndim=3, nonnegative=True)
    if W.shape[1] != W.shape[2]:
        raise ValueError(f"wins must be [G, K, K], got shape {W.shape}")
    l2 = check_scalar("l2", l2, low=0.0, low_inclusive=False)
    total = np.maximum(W.sum(axis=(1, 2), keepdims=True), 1e-300)
    weights = torch.from_numpy(W / total)

    def group_loss(r_g, w_g):  # one group: r_g [K], w_g [K, K]
        d = r_g[:, None] - r_g[None, :]
        return (w_g * torch.nn.functional.softplus(-d)).sum() + 0.5 * l2 * (r_g * r_g).sum()

    group_losses = torch.func.vmap(group_loss)
    group_grads = torch.func.vmap(torch.func.grad(group_loss))

    def hessian_times(r, v):  # [G, K]: H_g(r_g) v_g for every group (forward-over-reverse HVP)
        return torch.func.jvp(lambda x: group_grads(x, weights), (r,), (v,))[1]

    G, K = W.shape[:2]
    r = torch.zeros((G, K), dtype=torch.float64)
    current = group_losses(r, weights)
    for _ in range(100):
        grad = group_grads(r, weights)
        if float(grad.abs().max()) < 1e-13:
            break
        step = _conjugate_gradient(lambda v, r=r: hessian_times(r, v), grad, iterations=4 * K + 20)
        scale = torch.ones(G, 1, dtype=torch.float64)
        for _ in range(30):  # backtracking per group (the groups are independent problems)
            candidate = r - scale * step
            value = group_losses(candidate, weights)
            worse = value > current
            if not bool(worse.any()):
                break
            scale = torch.where(worse[:, None], 0.5 * scale, scale)
        r, current = candidate, value
    return r.numpy().copy()


def _conjugate_gradient(apply, rhs: torch.Tensor, iterations: int) -> torch.Tensor:
    """Solve A_g x_g = b_g for every row g of ``rhs`` [G, K] (A_g symmetric positive definite,
    given by ``apply(v)`` [G, K] -> [G, K]) by conjugate gradients, to a residual of 1e-15·‖b_g‖
    (Hestenes & Stiefel 1952)."""
    x = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    rs = (residual * residual).sum(-1, keepdim=True)
    stop = 1e-30 * rs.clamp(min=1e-300)
    for _ in range(iterations):
        if bool((rs <= stop).all()):
            break
        curvature = apply(direction)
        step = rs / (direction * curvature).sum(-1, keepdim=True).clamp(min=1e-300)
        step = torch.where(rs <= stop, torch.zeros_like(step), step)
        x = x + step * direction
        residual = residual - step * curvature
        new_rs = (residual * residual).sum(-1, keepdim=True)
        direction = residual + (new_rs / rs.clamp(min=1e-300)) * direction
        rs = new_rs
    return x


def _bernoulli_wins(first, second, prob, rng, size):
    """[size, size] counts N_ij = #(i beat j) of pairs (first, second) won with probability prob."""
    won = rng.random(first.size) < prob
    table = np.zeros((size, size))
    np.add.at(table, (np.where(won, first, second), np.where(won, second, first)), 1.0)
    return table


def fit_multiturn_reward(game, d_reference: np.ndarray, n_pairs: int | None, rng: np.random.Generator,
                         l2: float = BT_L2) -> np.ndarray:
    """Multi-turn RLHF reward (Shani et al. 2024, arXiv 2405.14655, §5 "RLHF-multi"): a BT reward
    r̂ [F] on final states fitted to ``n_pairs`` comparisons of two μ-played dialogues of the same
    context (contexts drawn from ρ, Bernoulli labels from the game's preference), one fit per
    context; ``n_pairs=None``: the population limit N_ij = d_μ(i) d_μ(j) P(i ≻ j | c).
    ``d_reference`` [F]: μ's final-state distribution (``final_distribution`` with table μ)."""
    d = as_float_array("d_reference", d_reference, shape=(game.num_final_states,), nonnegative=True)
    starts = np.asarray(game.final_starts)
    width = int(np.max(np.diff(starts)))
    wins = np.zeros((game.num_contexts, width, width))
    counts = None if n_pairs is None else rng.multinomial(check_int("n_pairs", n_pairs, low=1),
                                                          np.asarray(game.context_probs))
    for c in range(game.num_contexts):
        lo, hi = int(starts[c]), int(starts[c + 1])
        block = game.preference_matrix(c)
        dc = d[lo:hi]
        if counts is None:
            wins[c, : hi - lo, : hi - lo] = dc[:, None] * dc[None, :] * block
        elif counts[c]:
            first, second = rng.choice(hi - lo, size=(2, int(counts[c])), p=dc / dc.sum())
            wins[c, : hi - lo, : hi - lo] = _bernoulli_wins(first, second, block[first, second], rng, hi - lo)
    r = fit_bradley_terry(wins, l2)
    return np.concatenate([r[c, : int(starts[c + 1] - starts[c])] for c in range(game.num_contexts)])


def continuation_outcomes(game, batch: Transcripts) -> np.ndarray:
    """E [N_dec, A, F_max]: the final-state distribution after action a at decision state s when
    the dialogue continues with μ (local final ids of s's context), from an enumerated batch:
    every transcript through (x_h, y_h) adds its μ-continuation probability
    Π_{h'≥h} p(x_{h'+1}|·) Π_{h'>h} μ(y_{h'}|x_{h'}). Rows are normalised (a state reached by several
    transcripts gets the same continuation from each); all-zero for states no transcript visits."""
    if batch.step_probs is None:
        raise ValueError("batch must come from enumerate_transcripts (step_probs is None)")
    H, A = game.horizon, game.num_actions
    starts = np.asarray(game.final_starts)
    width = int(np.max(np.diff(starts)))
    mu_taken = np.asarray(game.reference)[batch.states[:, :H], batch.actions]
    E = np.zeros((game.num_decision_states, A, width))
    local = batch.states[:, -1] - game.num_decision_states - starts[batch.contexts]
    suffix = np.ones(batch.states.shape[0])
    for h in range(H - 1, -1, -1):
        suffix = suffix * batch.step_probs[:, h]
        np.add.at(E, (batch.states[:, h], batch.actions[:, h], local), suffix)
        suffix = suffix * mu_taken[:, h]
    total = E.sum(axis=2, keepdims=True)
    return np.divide(E, total, out=np.zeros_like(E), where=total > 0)


def fit_single_turn_reward(game, outcomes: np.ndarray, n_pairs: int | None, rng: np.random.Generator,
                           l2: float = BT_L2) -> np.ndarray:
    """Single-turn RLHF reward (Shani et al. 2024, §5 "single-turn-value"): at every decision state
    s the turn-level preference T_s(a, b) = E_a P_c E_bᵀ of two actions judged after μ-continuation
    of both branches (``outcomes`` E [N_dec, A, F_max] from :func:`continuation_outcomes`),
    antisymmetrised, and a BT reward r̂(s, ·) fitted to comparisons of two μ-drawn actions:
    ``n_pairs`` in all (states drawn uniformly), or None for the population limit
    N_ab = μ(a|s) μ(b|s) T_s(a, b). Returns r̂ [N_dec, A]."""
    n_dec, A = game.num_decision_states, game.num_actions
    E = as_float_array("outcomes", outcomes, ndim=3, nonnegative=True)
    if E.shape[:2] != (n_dec, A):
        raise ValueError(f"outcomes must be [N_dec={n_dec}, A={A}, F], got shape {E.shape}")
    mu = np.asarray(game.reference)
    context = np.asarray(game.state_context)
    counts = None if n_pairs is None else rng.multinomial(check_int("n_pairs", n_pairs, low=1),
                                                          np.full(n_dec, 1.0 / n_dec))
    wins = np.zeros((n_dec, A, A))
    for s in range(n_dec):
        block = game.preference_matrix(int(context[s]))
        Es = E[s, :, : block.shape[0]]
        T = Es @ block @ Es.T
        T = 0.5 * (T + 1.0 - T.T)
        if counts is None:
            wins[s] = mu[s][:, None] * mu[s][None, :] * T
        elif counts[s]:
            first, second = rng.choice(A, size=(2, int(counts[s])), p=mu[s])
            wins[s] = _bernoulli_wins(first, second, T[first, second], rng, A)
    return fit_bradley_terry(wins, l2)


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
    nash: np.ndarray | None  # π*_α [N_dec, A] given by the caller, or None
    step: int = 0
    sft_loss: float = float("nan")


def _fit_rewards(config: MTPOConfig, game, text, tokenizer, policy, seed: int) -> np.ndarray | None:
    """The RLHF baselines' reward (None for the preference algorithms), fitted on comparisons
    drawn with a generator of its own (the training generators are untouched)."""
    if config.algorithm not in ("rlhf_multi", "rlhf_single"):
        return None
    if config.algorithm == "rlhf_multi" and config.reward_source == "game":
        return np.asarray(game.final_reward, dtype=np.float64)
    rng = np.random.default_rng([seed, 0xB7])
    pairs = None if config.reward_pairs == 0 else config.reward_pairs
    batch = enumerate_transcripts(policy, tokenizer, text)
    if config.algorithm == "rlhf_multi":
        d_mu = final_distribution(None, batch, game, table=np.asarray(game.reference))
        return fit_multiturn_reward(game, d_mu, pairs, rng)
    return fit_single_turn_reward(game, continuation_outcomes(game, batch), pairs, rng)


def _check_reward(config: MTPOConfig, game, reward) -> np.ndarray:
    shape = (game.num_final_states,) if config.algorithm == "rlhf_multi" else (game.num_decision_states,
                                                                              game.num_actions)
    if config.algorithm not in ("rlhf_multi", "rlhf_single"):
        raise ValueError(f"reward is used only by rlhf_multi and rlhf_single, got it with algorithm="
                         f"{config.algorithm!r}")
    return as_float_array("reward", reward, shape=shape)


def prepare(config: MTPOConfig, seed: int, device: Any = "cpu", *, nash: np.ndarray | None = None,
            reward: np.ndarray | None = None) -> MTPOState:
    """Game, tokenizer, policy (distilled towards μ for ``sft_steps``), optimiser, generators.

    ``nash``: the regularised Nash policy π*_α [N_dec, A] of the game at ``config.alpha``,
    computed by the caller (e.g. ``fixpoint_rl.tabular.multiturn.multiturn_regularized_nash``);
    ``evaluate`` then reports KL_p(π*_α‖π_θ) and P(π_θ ≻ π*_α). ``reward``: the RLHF reward
    ([F] for rlhf_multi, [N_dec, A] for rlhf_single) instead of this module's own BT fit."""
    from .models import build_lm
    from .tasks import OBSERVATION_CHARS, dialogue_text_game
    from .tokenizer import build_char_tokenizer

    config.validate()
    game = build_game(config)
    if nash is not None:
        nash = check_distribution("nash", nash, shape=(game.num_decision_states, game.num_actions), copy=True)
    if reward is not None:
        reward = _check_reward(config, game, reward)
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
    if config.lr_schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(1.0 - t / config.steps, 0.0))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    if reward is None:
        reward = _fit_rewards(config, game, text, tokenizer, policy, seed)
    state = MTPOState(config, game, text, tokenizer, policy, optimizer, scheduler, generator, rng, reward, nash)
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


def geometric_mixture(logp: torch.Tensor, log_ref: torch.Tensor, tau: float) -> torch.Tensor:
    """log π^τ = log_softmax((1 − τ) log π_θ + τ log μ) over the last (action) axis [..., A]
    (MTPO-τ's mixture; NLHF's per-token geometric mixture)."""
    return torch.log_softmax((1.0 - tau) * logp + tau * log_ref, dim=-1)


def _final_distribution_of(batch: Transcripts, game, behaviour_taken: torch.Tensor) -> np.ndarray:
    """[F] final-state distribution (conditional on the context) of the per-transcript policy whose
    log-probabilities of the taken actions are ``behaviour_taken`` [B, H] (enumerated batch)."""
    probs = behaviour_taken.sum(-1).exp().to(torch.float64).cpu().numpy() * batch.transition_probs
    d = np.zeros(game.num_final_states)
    np.add.at(d, batch.states[:, -1] - game.num_decision_states, probs)
    return d


@dataclasses.dataclass
class StepLosses:
    """What one step differentiates: ``policy_loss`` and ``value_loss`` (scalars with graphs),
    the batch, ``logp`` [B, H, A] (log π_θ, with graph), the terminal signals and the metrics."""

    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    batch: Transcripts
    logp: torch.Tensor
    terminal: np.ndarray | None
    metrics: dict[str, float]


def step_losses(state: MTPOState) -> StepLosses:
    """Roll out (or enumerate), score, GAE: the losses of one step (no parameter change, but the
    sampled estimator advances the state's generators).

    Every algorithm has a behaviour policy b (the one its trajectories follow: π_θ, or π^τ for
    ``mtpo_tau``); the turn rewards carry b's future KL, V_φ fits b's returns and the score term
    −Â π_θ/b log π_θ carries the per-turn ratio π_θ/b (1 unless b = π^τ)."""
    config, game, policy = state.config, state.game, state.policy
    H, alpha, tau = game.horizon, config.alpha, config.mixture_beta
    algorithm = config.algorithm
    expected = config.estimator == "expected"
    terminal: np.ndarray | None = None
    if expected:
        batch = enumerate_transcripts(policy, state.tokenizer, state.text)
    else:
        contexts = state.rng.choice(game.num_contexts, size=config.batch_contexts, p=game.context_probs)
        source = "mixture" if algorithm == "mtpo_tau" else "policy"
        batch = rollout(policy, state.tokenizer, state.text, contexts, state.generator, state.rng,
                        source=source, beta=tau)
        if algorithm in ("mtpo", "mtpo_tau"):  # 2 generations and 2 updates per context
            other = rollout(policy, state.tokenizer, state.text, contexts, state.generator, state.rng,
                            source=source, beta=tau)
            first = _terminal_signals(state, batch, other.states[:, -1], None)
            batch = _concat(batch, other)
            terminal = np.concatenate([first, 1.0 - first])
        elif algorithm == "mtpo_tau_nash_md":
            other = rollout(policy, state.tokenizer, state.text, contexts, state.generator, state.rng,
                            source="mixture", beta=tau)
            terminal = _terminal_signals(state, batch, other.states[:, -1], None)
        elif algorithm == "rlhf_multi":
            terminal = _terminal_signals(state, batch, None, None)
    logp, values = decision_outputs(policy, batch.ids, batch.mask, batch.prompt_len, H)
    log_ref = _log_ref(game, batch.states[:, :H]).to(logp)
    actions = torch.from_numpy(batch.actions).to(logp.device)
    with torch.no_grad():
        current = logp.detach()
        behaviour = geometric_mixture(current, log_ref, tau) if algorithm == "mtpo_tau" else current
        taken = current.gather(-1, actions[..., None]).squeeze(-1)
        behaviour_taken = behaviour.gather(-1, actions[..., None]).squeeze(-1)
        if expected and algorithm in ("mtpo", "mtpo_tau", "mtpo_tau_nash_md"):
            opponent = behaviour_taken
            if algorithm == "mtpo_tau_nash_md":
                opponent = geometric_mixture(current, log_ref, tau).gather(-1, actions[..., None]).squeeze(-1)
            terminal = _terminal_signals(state, batch, None, _final_distribution_of(batch, game, opponent))
        elif expected and algorithm == "rlhf_multi":
            terminal = _terminal_signals(state, batch, None, None)
        kl = (current.exp() * (current - log_ref)).sum(-1)
        behaviour_kl = (behaviour.exp() * (behaviour - log_ref)).sum(-1)
        v = values.detach().to(logp.dtype)
        if algorithm == "rlhf_single":
            r = torch.from_numpy(state.reward[batch.states[:, :H], batch.actions]).to(logp)
            advantages, returns = r - v, r
        else:
            rewards = turn_rewards(torch.from_numpy(terminal).to(logp), behaviour_kl, alpha)
            advantages, returns = gae(rewards, v, config.lam)
        if expected:
            # exact trajectory probabilities ρ(c)·Π p·Π b (detached): Σ_w (·) is the expectation
            weights = torch.from_numpy(batch.weights).to(logp) * torch.exp(behaviour_taken.sum(-1))
        else:
            weights = torch.full((batch.ids.shape[0],), 1.0 / batch.ids.shape[0], dtype=logp.dtype,
                                 device=logp.device)
        if config.normalize_advantages:
            advantages = advantages / (advantages.std() + 1e-8)
        ratio = torch.exp(taken - behaviour_taken)  # π_θ/π^τ per turn (1 for on-policy algorithms)
    policy_loss = mtpo_loss(logp, log_ref, actions, advantages * ratio, weights, alpha)
    value_loss = (weights[:, None] * (returns.to(values.dtype) - values) ** 2).sum()
    out = {"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()),
           "kl_per_turn": float((weights[:, None] * kl).sum() / weights.sum())}
    if terminal is not None:
        out["terminal"] = float(np.mean(terminal))
    return StepLosses(policy_loss, value_loss, batch, logp, terminal, out)


def train_step(state: MTPOState) -> dict[str, float]:
    """One update: :func:`step_losses`, then one AdamW step on policy + value loss."""
    losses = step_losses(state)
    state.optimizer.zero_grad(set_to_none=True)
    (losses.policy_loss + losses.value_loss).backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    return losses.metrics


def _concat(a: Transcripts, b: Transcripts) -> Transcripts:
    B = a.ids.shape[0] + b.ids.shape[0]
    return Transcripts(torch.cat([a.ids, b.ids]), torch.cat([a.mask, b.mask]), a.prompt_len,
                       np.concatenate([a.states, b.states]), np.concatenate([a.actions, b.actions]),
                       np.concatenate([a.contexts, b.contexts]), np.full(B, 1.0 / B))


def trajectory_kl_from(policy: DialoguePolicy, batch: Transcripts, table: np.ndarray) -> float:
    """KL_p(π_table‖π_θ) = Σ_τ P_table(τ) log(P_table(τ)/P_θ(τ)) over every enumerated transcript τ
    (exact; the transitions cancel, Shani et al. 2024, Lemma 3.1). ``table`` [N_dec, A] is a state
    policy (e.g. π*_α); the LM may depend on the whole transcript (layered games too)."""
    H = batch.actions.shape[1]
    with torch.no_grad():
        logp, _ = decision_outputs(policy, batch.ids, batch.mask, batch.prompt_len, H)
    log_theta = logp.gather(-1, torch.from_numpy(batch.actions).to(logp.device)[..., None]).squeeze(-1)
    log_theta = log_theta.sum(-1).to(torch.float64).cpu().numpy()
    taken = np.asarray(table)[batch.states[:, :H], batch.actions]
    p = batch.weights * np.prod(taken, axis=1)
    keep = p > 0
    with np.errstate(divide="ignore"):
        log_table = np.log(taken).sum(axis=1)
    return float(np.sum(p[keep] * (log_table[keep] - log_theta[keep])))


def evaluate(state: MTPOState) -> dict[str, float]:
    """Exact metrics by enumerating transcripts: win rate against μ, expected reward (games with a
    reward), and KL_p(π*_α‖π_θ) and P(π_θ ≻ π*_α) when ``prepare`` was given ``nash``."""
    game = state.game
    batch = enumerate_transcripts(state.policy, state.tokenizer, state.text)
    d = final_distribution(state.policy, batch, game)
    d_mu = final_distribution(None, batch, game, table=np.asarray(game.reference))
    out = {"win_rate_vs_reference": win_rate(game, d, d_mu)}
    if game.final_reward is not None:
        out["expected_reward"] = expected_reward(game, d)
    if state.nash is not None:
        out["kl_to_nash"] = trajectory_kl_from(state.policy, batch, state.nash)
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
