"""``fixpoint train online_offline``: online vs offline GPO on a generated text task with a golden judge.

Tang, Guo, Zheng, Calandriello, Cao, Tarassov, Munos, Ávila Pires, Valko, Cheng, Dabney,
"Understanding the performance gap between online and offline alignment algorithms" (2024,
arXiv 2405.08448). The same GPO loss (Tang et al., ICML 2024, arXiv 2402.05749, §2; IPO = the
squared loss by default, any GPO kind or alias) is applied to

* ``mode="offline"``: a dataset of pairs sampled ONCE (before training) and labelled once, then
  iterated in epochs (each epoch a fresh permutation of the same pairs);
* ``mode="online"``: ``batch_size`` fresh pairs y, y′ ~ π_θ(·|x) per step, labelled by the same
  judge.

On a covered bandit the online and offline optima differ but both are attained
(``fixpoint_rl.tabular.online_offline``); the paper's gap needs function approximation, so it is
measured here on a small Llama (``deep.llm.models``) and free-text answers.

**Task and judge.** 2-digit addition ``"a+b="`` (operands below ``max_operand``) built by
``deep.llm.train_rl.build_task``. Golden reward of a completion c of prompt a+b:
r(c) = −|int(c) − (a+b)| if c is a non-empty string of digits, clipped below at
``invalid_reward``; any other completion gets ``invalid_reward``. The golden preference is a
Bradley–Terry model on it, P(c ≻ c′) = σ((r(c) − r(c′))/``label_temperature``); a label is one
Bernoulli draw of it. The reference π_SFT is the model after a supervised warm start stopped
early (``deep.llm.sft.supervised_warm_start``), which is also the initial policy.

**Ablations (paper §4–5) as config fields** (all offline; ``data_source``):

* coverage — ``data_source="sft"`` with ``data_temperature`` > 1 (a broader behaviour policy) or
  more pairs (``offline_pairs``) over more or fewer prompts (``data_prompts``);
* data quality — ``"checkpoint"`` (pairs from the policy saved in ``data_checkpoint``, e.g. a
  finished online run's last checkpoint) or ``"online_policy"`` (an online run of this config is
  trained in-process first, for ``data_policy_steps`` steps, and the data sampled from it);
* offline on online samples — ``"online_samples"``: the dataset is the exact sequence of labelled
  pairs an online run generated (read from ``data_checkpoint``, or generated in-process by an
  online run of this config), kept in the ``"original"`` order (then training reproduces the
  online run bit for bit, the paper's "ordered" control) or ``"shuffled"`` each epoch.

**Metrics per log row** (``eval_prompts`` held-out test prompts, one sample each at temperature 1;
seeded so evaluation never consumes training randomness; ``_se`` = standard error over prompts):

* ``kl`` — KL(π_θ‖π_SFT) by the sequence log-ratio estimator: the mean of
  log π_θ(y|x) − log π_SFT(y|x) over y ~ π_θ (unbiased; the s.e. is the sample standard deviation
  over √n);
* ``reward`` — golden reward mean; ``exact`` — exact-answer rate; ``valid`` — digits-only rate;
* ``win_rate`` — golden win rate against π_SFT: the mean judge probability P(y ≻ y′) with
  y ~ π_θ, y′ ~ π_SFT (fixed reference samples, one per prompt);
* ``pair_accuracy`` — classification accuracy on a held-out labelled pair set (test prompts,
  pairs from π_SFT, distinct completions, one Bernoulli label each): the fraction of pairs where the
  implicit reward margin β·(log π/π_SFT(y_w) − log π/π_SFT(y_l)) is positive (ties count ½);
  the paper's "offline policies classify better but generate worse".

Checkpoints hold the policy, the reference, the optimiser, the three generators, the dataset
(offline) or every generated pair (online), the held-out sets and the epoch cursor: a killed run
continues bitwise on CPU.

Shapes: B pairs per step, D dataset pairs, T completion tokens, E evaluation prompts.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ...envs.checks import check_int, check_scalar, describe
from ..config import Config
from ..registry import TrainerSpec
from ..runtime import Run, generator_state, restore_generator
from .gpo import PreferenceBatch, gpo_lm_loss, pair_logprobs
from .models import build_lm
from .sampling import sample, sequence_logprobs
from .sft import SFTConfig, supervised_warm_start
from .tokenizer import build_char_tokenizer, encode_prompts

__all__ = [
    "DATA_SOURCES",
    "OnlineOfflineConfig",
    "OnlineOfflineState",
    "PairSet",
    "TRAINERS",
    "bradley_terry_labels",
    "build_offline_dataset",
    "evaluate",
    "golden_rewards",
    "judge_probability",
    "kl_estimate",
    "mean_and_se",
    "pairwise_accuracy",
    "prepare",
    "run_online",
    "sample_labelled_pairs",
    "train",
    "train_step",
]

DATA_SOURCES = ("sft", "checkpoint", "online_policy", "online_samples")


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True, kw_only=True)
class OnlineOfflineConfig(Config):
    """Settings of online vs offline GPO on addition (every field can be set with ``--set``)."""

    mode: Literal["online", "offline"] = "online"
    """online: fresh on-policy pairs each step; offline: a fixed dataset (see data_source)."""
    kind: str = "squared"
    """GPO loss (a GPO kind or alias: ipo = squared, dpo = logistic, slic = hinge, ...)."""
    beta: float = 0.2
    """GPO β (inside f; IPO's τ = β/2)."""
    margin: Literal["sum", "mean"] = "sum"
    """GPO margins: summed (the papers' ρ) or per-token-averaged log-ratios."""
    label_temperature: float = 2.0
    """Temperature of the Bradley–Terry golden judge on the golden reward."""
    invalid_reward: float = -100.0
    """Golden reward of a completion that is not a digit string (and the floor of all rewards)."""
    n_digits: int = 2
    """Digits per operand."""
    max_operand: int = 50
    """Operands are drawn below this bound (0: any n-digit operand)."""
    n_train: int = 2200
    """Training prompts."""
    n_test: int = 300
    """Held-out prompts (evaluation and the held-out pair set)."""
    model: str = "nano"
    """LM preset (nano, micro, small, base, large)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Parameter dtype."""
    sft_steps: int = 150
    """Supervised warm-start steps (stopped early on purpose: π_SFT leaves room to improve)."""
    sft_batch_size: int = 128
    """Warm-start batch size."""
    sft_lr: float = 2e-3
    """Warm-start AdamW learning rate."""
    steps: int = 200
    """GPO steps."""
    batch_size: int = 64
    """B labelled pairs per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    grad_clip: float = 0.0
    """Max global gradient norm (0: no clipping)."""
    offline_pairs: int = 0
    """Offline dataset size D (0: steps × batch_size, one epoch = as many labelled pairs as online sees)."""
    data_source: Literal["sft", "checkpoint", "online_policy", "online_samples"] = "sft"
    """Offline data: from π_SFT, from the policy in data_checkpoint, from an in-process online run's
    policy, or the labelled pairs an online run generated."""
    data_temperature: float = 1.0
    """Sampling temperature of the offline behaviour policy (> 1: broader coverage)."""
    data_prompts: int = 0
    """Offline data uses the first data_prompts training prompts (0: all of them)."""
    data_checkpoint: str | None = None
    """A checkpoint file of an online run of this trainer (data_source checkpoint / online_samples)."""
    data_policy_steps: int = 0
    """Steps of the in-process online run (data_source online_policy / online_samples; 0: steps)."""
    data_order: Literal["shuffled", "original"] = "shuffled"
    """online_samples: keep the online run's order, or shuffle the pairs every epoch."""
    eval_prompts: int = 256
    """E held-out prompts per evaluation (one policy sample each)."""
    heldout_pairs: int = 256
    """Labelled π_SFT pairs on test prompts for pair_accuracy (identical completions dropped)."""
    log_every: int = 20
    """Steps between CSV rows (each with the evaluation metrics)."""

    def validate(self) -> None:
        for name in ("n_digits", "n_train", "n_test", "sft_steps", "sft_batch_size", "steps", "batch_size",
                     "eval_prompts", "heldout_pairs", "log_every"):
            check_int(name, getattr(self, name), low=1)
        for name in ("offline_pairs", "data_prompts", "data_policy_steps", "max_operand"):
            check_int(name, getattr(self, name), low=0)
        for name in ("beta", "lr", "sft_lr", "label_temperature", "data_temperature"):
            check_scalar(name, getattr(self, name), low=0.0, low_inclusive=False)
        check_scalar("grad_clip", self.grad_clip, low=0.0)
        check_scalar("invalid_reward", self.invalid_reward, high=0.0, high_inclusive=False)
        if self.eval_prompts > self.n_test:
            raise ValueError(f"eval_prompts must be ≤ n_test={self.n_test}, got {self.eval_prompts}")
        if self.data_prompts > self.n_train:
            raise ValueError(f"data_prompts must be ≤ n_train={self.n_train}, got {self.data_prompts}")
        if self.data_source == "checkpoint" and self.data_checkpoint is None:
            raise ValueError("data_checkpoint must name a checkpoint file for data_source='checkpoint', got None")
        from ...tabular.core.preference_losses import check_kind

        check_kind(self.kind)

    @property
    def dataset_size(self) -> int:
        """D (``offline_pairs``, or steps × batch_size)."""
        return self.offline_pairs or self.steps * self.batch_size


# ----------------------------------------------------------------------------- judge and estimators
def golden_rewards(sums: Any, completions: list[str], invalid_reward: float) -> np.ndarray:
    """[B] golden reward −|int(c) − s| (clipped below at ``invalid_reward``); non-digit c → ``invalid_reward``.

    Args:
      sums: [B] true answers s = a + b; completions: B decoded completions (special tokens dropped).
    """
    sums = np.asarray(sums, dtype=np.int64)
    invalid_reward = check_scalar("invalid_reward", invalid_reward, high=0.0, high_inclusive=False)
    if sums.ndim != 1 or not isinstance(completions, (list, tuple)) or len(completions) != sums.shape[0]:
        raise ValueError(f"completions must be a list of {sums.shape[0] if sums.ndim == 1 else '?'} strings "
                         f"matching sums [B], got {describe(completions)}")
    out = np.full(len(completions), float(invalid_reward))
    for i, (s, c) in enumerate(zip(sums.tolist(), completions)):
        if isinstance(c, str) and c and c.isascii() and c.isdigit():
            out[i] = max(-float(abs(int(c) - s)), invalid_reward)
    return out


def judge_probability(first: Any, second: Any, temperature: float) -> np.ndarray:
    """Bradley–Terry judge P(first ≻ second) = σ((r_first − r_second)/temperature), elementwise."""
    temperature = check_scalar("temperature", temperature, low=0.0, low_inclusive=False)
    diff = (np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)) / temperature
    small = np.exp(-np.abs(diff))  # σ without overflow, and exact tails: σ(−d) = e^{−d}/(1 + e^{−d})
    return np.where(diff >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


def bradley_terry_labels(first: Any, second: Any, temperature: float, generator: torch.Generator) -> np.ndarray:
    """[B] bool: "first wins", one Bernoulli(P(first ≻ second)) draw per pair (uniforms from ``generator``)."""
    p = judge_probability(first, second, temperature)
    u = torch.rand(p.shape, generator=generator, dtype=torch.float64).numpy()
    return u < p


def mean_and_se(values: Any) -> tuple[float, float]:
    """(mean, standard error = sample std (ddof 1) / √n) of a 1-D sample (s.e. 0 for n = 1)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a non-empty finite sample, got {describe(values)}")
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def kl_estimate(policy_logprobs: Any, reference_logprobs: Any) -> tuple[float, float]:
    """KL(π‖π_ref) ≈ mean of log π(y|x) − log π_ref(y|x) over samples y ~ π(·|x), and its s.e.

    The sequence log-ratio ("k1") estimator: E_{y~π}[log π(y)/π_ref(y)] = KL(π‖π_ref) exactly, so
    the sample mean is unbiased; the s.e. is the CLT one (std over √n). Inputs: [n] summed
    sequence log-probabilities of the same policy samples under π and π_ref.
    """
    policy = np.asarray(torch.as_tensor(policy_logprobs).double().cpu(), dtype=np.float64)
    reference = np.asarray(torch.as_tensor(reference_logprobs).double().cpu(), dtype=np.float64)
    if policy.shape != reference.shape or policy.ndim != 1:
        raise ValueError(f"policy_logprobs and reference_logprobs must be [n] of one shape, "
                         f"got {policy.shape} and {reference.shape}")
    return mean_and_se(policy - reference)


def pairwise_accuracy(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any,
                      beta: float) -> float:
    """Fraction of labelled pairs ranked as labelled by the implicit reward (ties count ½).

    The implicit reward of GPO/DPO is β·log π(y|x)/π_ref(y|x) (Rafailov et al. 2023, arXiv
    2305.18290, §5); pair b is classified correctly when β·[(log π − log π_ref)(y_w) − (log π −
    log π_ref)(y_l)] > 0. Inputs [B] summed sequence log-probabilities; β > 0.
    """
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    arrays = [np.asarray(torch.as_tensor(a).double().cpu(), dtype=np.float64) for a in
              (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
    if any(a.shape != arrays[0].shape or a.ndim != 1 for a in arrays) or arrays[0].size == 0:
        raise ValueError(f"the four log-probability arrays must be [B] of one shape, got {[a.shape for a in arrays]}")
    margin = beta * ((arrays[0] - arrays[2]) - (arrays[1] - arrays[3]))
    return float(np.mean(np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5))))


# ----------------------------------------------------------------------------- pairs
@dataclasses.dataclass(eq=False)
class PairSet:
    """D labelled pairs: prompt indices and chosen/rejected completions (right padded with pad id).

    Attributes:
      prompt_index: [D] int64 index into the split's prompts.
      chosen, rejected: [D, T] int64 token ids (pad after each row's length).
      chosen_length, rejected_length: [D] int64 numbers of completion tokens (≥ 1; EOS included).
    """

    prompt_index: torch.Tensor
    chosen: torch.Tensor
    chosen_length: torch.Tensor
    rejected: torch.Tensor
    rejected_length: torch.Tensor

    @property
    def size(self) -> int:
        """D."""
        return int(self.prompt_index.shape[0])

    def subset(self, index: torch.Tensor) -> PairSet:
        """The pairs ``index`` [B] (same width)."""
        return PairSet(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    @staticmethod
    def concat(parts: list[PairSet], pad_id: int) -> PairSet:
        """One set from several (widths padded with ``pad_id``)."""
        if not parts:
            raise ValueError("parts must hold at least one PairSet, got []")
        width = max(max(p.chosen.shape[1], p.rejected.shape[1]) for p in parts)

        def widen(x):
            return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=pad_id)

        return PairSet(torch.cat([p.prompt_index for p in parts]), torch.cat([widen(p.chosen) for p in parts]),
                       torch.cat([p.chosen_length for p in parts]), torch.cat([widen(p.rejected) for p in parts]),
                       torch.cat([p.rejected_length for p in parts]))

    def preference_batch(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> PreferenceBatch:
        """The pairs as a :class:`PreferenceBatch` (prompts [D, P] given), trimmed to the longest row.

        Both sides are padded to the longest of the 2D completions, the width the sampler returns
        for a batch of 2D samples, so a replayed batch equals the sampled one tensor for tensor.
        """
        width = int(max(self.chosen_length.max(), self.rejected_length.max()))
        positions = torch.arange(width)

        def side(ids, length):
            mask = (positions[None, :] < length[:, None]).long()
            return ids[:, :width].to(prompt_ids.device), mask.to(prompt_ids.device)

        return PreferenceBatch(prompt_ids, prompt_mask, *side(self.chosen, self.chosen_length),
                               *side(self.rejected, self.rejected_length))


def sample_labelled_pairs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int, *,
                          reward_fn, label_temperature: float, generator: torch.Generator,
                          label_generator: torch.Generator, temperature: float = 1.0, stop_at_eos: bool = True,
                          allowed_tokens: Any = None) -> tuple[PairSet, np.ndarray, np.ndarray]:
    """B pairs y, y′ ~ π(·|x) (i.i.d., at ``temperature``) for B prompts, labelled by the BT judge.

    Args:
      model: the sampling policy; prompt_ids, prompt_mask: [B, P] left padded.
      reward_fn: ``reward_fn(tokens [2B, T], mask [2B, T]) -> [2B]`` golden rewards (rows 2b and
        2b + 1 are the two samples of prompt b).
      generator: the sampler's ``torch.Generator``; label_generator: the labels' (CPU).

    Returns:
      (``PairSet`` with ``prompt_index`` = arange(B), winner as ``chosen``; [B, 2] rewards of
      (first, second) samples; [B] bool "first wins").
    """
    B = int(prompt_ids.shape[0])
    drawn = sample(model, prompt_ids, prompt_mask, max_new_tokens, n=2, temperature=temperature,
                   stop_at_eos=stop_at_eos, generator=generator, allowed_tokens=allowed_tokens)
    rewards = np.asarray(reward_fn(drawn.tokens, drawn.mask), dtype=np.float64).reshape(B, 2)
    first_wins = bradley_terry_labels(rewards[:, 0], rewards[:, 1], label_temperature, label_generator)
    tokens = drawn.tokens.cpu().view(B, 2, -1)
    lengths = drawn.mask.cpu().sum(-1).view(B, 2)
    pick = torch.as_tensor(first_wins)
    chosen = torch.where(pick[:, None], tokens[:, 0], tokens[:, 1])
    rejected = torch.where(pick[:, None], tokens[:, 1], tokens[:, 0])
    chosen_length = torch.where(pick, lengths[:, 0], lengths[:, 1])
    rejected_length = torch.where(pick, lengths[:, 1], lengths[:, 0])
    pairs = PairSet(torch.arange(B), chosen, chosen_length, rejected, rejected_length)
    return pairs, rewards, first_wins


# ----------------------------------------------------------------------------- state
@dataclasses.dataclass(eq=False)
class OnlineOfflineState:
    """Everything the loop mutates or reads (and a checkpoint holds)."""

    config: OnlineOfflineConfig
    task: Any
    tokenizer: Any
    model: Any
    reference: Any
    optimizer: torch.optim.Optimizer
    data_generator: torch.Generator
    sample_generator: torch.Generator
    label_generator: torch.Generator
    sums_train: np.ndarray
    sums_test: np.ndarray
    heldout: PairSet | None = None
    heldout_reference: tuple[torch.Tensor, torch.Tensor] | None = None
    eval_reference_rewards: np.ndarray | None = None
    dataset: PairSet | None = None
    shuffle: bool = True
    order: torch.Tensor | None = None
    cursor: int = 0
    generated: list = dataclasses.field(default_factory=list)
    step: int = 0
    sft_accuracy: float = float("nan")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompts(self, split: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt ids/mask of ``index`` [B] into the split's examples."""
        examples = self.task.train if split == "train" else self.task.test
        return encode_prompts(self.tokenizer, [examples[i].prompt for i in index.tolist()], device=self.device)

    def rewards(self, sums: np.ndarray, tokens: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        from .train_rl import _decode

        return golden_rewards(sums, _decode(self.tokenizer, tokens, mask), self.config.invalid_reward)


_SFT_CACHE: dict[tuple, tuple[dict, float]] = {}


def _sft_key(config: OnlineOfflineConfig, seed: int, device: torch.device) -> tuple:
    return (config.model, config.dtype, config.n_digits, config.max_operand, config.n_train, config.n_test,
            config.sft_steps, config.sft_batch_size, config.sft_lr, seed, str(device))


def _build_task(config: OnlineOfflineConfig, seed: int):
    from .train_rl import RLConfig, build_task

    return build_task(RLConfig(task="addition", n_digits=config.n_digits, max_operand=config.max_operand,
                               n_train=config.n_train, n_test=config.n_test,
                               eval_prompts=min(300, config.n_test)), seed)


def prepare(config: OnlineOfflineConfig, seed: int, device: Any = "cpu", *, warm_start: bool = True
            ) -> OnlineOfflineState:
    """Task, tokenizer, SFT-warm-started policy and its frozen copy π_SFT, optimiser, generators.

    The warm start is deterministic from ``seed`` (it is cached in-process by its settings, so
    arms of one seed share it without recomputing). ``warm_start=False`` skips it (the caller
    loads the weights, e.g. from a checkpoint).
    """
    seed = check_int("seed", seed, low=0)
    task = _build_task(config, seed)
    tokenizer = build_char_tokenizer()
    model = build_lm(config.model, len(tokenizer), seed, dtype=config.dtype, device=device)
    device = next(model.parameters()).device
    accuracy = float("nan")
    if warm_start:
        key = _sft_key(config, seed, device)
        if key not in _SFT_CACHE:
            result = supervised_warm_start(
                model, tokenizer, task,
                SFTConfig(steps=config.sft_steps, batch_size=config.sft_batch_size, lr=config.sft_lr,
                          eval_every=config.sft_steps, eval_examples=min(100, config.n_test), seed=seed))
            while len(_SFT_CACHE) >= 4:
                _SFT_CACHE.pop(next(iter(_SFT_CACHE)))
            _SFT_CACHE[key] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, result.accuracy)
        weights, accuracy = _SFT_CACHE[key]
        model.load_state_dict(weights)
    reference = build_lm(config.model, len(tokenizer), seed, dtype=config.dtype, device=device)
    reference.load_state_dict(model.state_dict())
    reference.eval().requires_grad_(False)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    sums_train = np.array([int(e.answer) for e in task.train], dtype=np.int64)
    sums_test = np.array([int(e.answer) for e in task.test], dtype=np.int64)
    return OnlineOfflineState(
        config=config, task=task, tokenizer=tokenizer, model=model, reference=reference, optimizer=optimizer,
        data_generator=torch.Generator().manual_seed(seed + 1),
        sample_generator=torch.Generator(device=device).manual_seed(seed + 2),
        label_generator=torch.Generator().manual_seed(seed + 3),
        sums_train=sums_train, sums_test=sums_test, sft_accuracy=accuracy)


def _heldout_sets(state: OnlineOfflineState, seed: int) -> None:
    """Held-out labelled pairs (π_SFT, test prompts) with their π_SFT log-probs, and reference
    samples of the evaluation prompts with their golden rewards (own generators: seed-determined)."""
    config = state.config
    sampler = torch.Generator(device=state.device).manual_seed(seed + 11)
    labels = torch.Generator().manual_seed(seed + 12)
    index = torch.arange(config.heldout_pairs) % config.n_test
    ids, mask = state.prompts("test", index)
    sums = state.sums_test[index.numpy()]
    pairs, _, _ = sample_labelled_pairs(
        state.reference, ids, mask, state.task.max_new_tokens, label_temperature=config.label_temperature,
        generator=sampler, label_generator=labels,
        reward_fn=lambda t, m: state.rewards(np.repeat(sums, 2), t, m))
    pairs.prompt_index = index
    same = (pairs.chosen_length == pairs.rejected_length) & (pairs.chosen == pairs.rejected).all(-1)
    keep = torch.nonzero(~same).squeeze(-1)
    if keep.numel() == 0:
        raise ValueError("heldout_pairs must leave at least one pair with distinct completions; all were identical")
    state.heldout = pairs.subset(keep)
    batch = state.heldout.preference_batch(*state.prompts("test", state.heldout.prompt_index))
    with torch.no_grad():
        state.heldout_reference = tuple(x.detach() for x in pair_logprobs(state.reference, batch))
    eval_index = torch.arange(config.eval_prompts)
    ids, mask = state.prompts("test", eval_index)
    drawn = sample(state.reference, ids, mask, state.task.max_new_tokens, generator=sampler, stop_at_eos=True)
    state.eval_reference_rewards = state.rewards(state.sums_test[:config.eval_prompts], drawn.tokens, drawn.mask)


def evaluate(state: OnlineOfflineState, generator: torch.Generator) -> dict[str, float]:
    """KL, golden reward, exact/valid rates, win rate vs π_SFT (each with s.e.), pair accuracy."""
    config = state.config
    model = state.model
    index = torch.arange(config.eval_prompts)
    ids, mask = state.prompts("test", index)
    was_training = model.training
    model.eval()
    drawn = sample(model, ids, mask, state.task.max_new_tokens, generator=generator, stop_at_eos=True)
    with torch.no_grad():
        policy = sequence_logprobs(model, ids, mask, drawn.tokens, drawn.mask)
        ref = sequence_logprobs(state.reference, ids, mask, drawn.tokens, drawn.mask)
        batch = state.heldout.preference_batch(*state.prompts("test", state.heldout.prompt_index))
        chosen, rejected = pair_logprobs(model, batch)
    if was_training:
        model.train()
    rewards = state.rewards(state.sums_test[:config.eval_prompts], drawn.tokens, drawn.mask)
    out: dict[str, float] = {}
    out["kl"], out["kl_se"] = kl_estimate(policy, ref)
    out["reward"], out["reward_se"] = mean_and_se(rewards)
    out["exact"], out["exact_se"] = mean_and_se(rewards == 0.0)
    out["valid"] = float(np.mean(rewards > config.invalid_reward))
    out["win_rate"], out["win_rate_se"] = mean_and_se(
        judge_probability(rewards, state.eval_reference_rewards, config.label_temperature))
    accuracy = pairwise_accuracy(chosen, rejected, *state.heldout_reference, config.beta)
    out["pair_accuracy"] = accuracy
    out["pair_accuracy_se"] = float(np.sqrt(accuracy * (1.0 - accuracy) / state.heldout.size))
    return out


# ----------------------------------------------------------------------------- data
def _load_checkpoint_state(path: str) -> dict:
    from ..checkpoint import load_checkpoint

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"data_checkpoint must be an existing checkpoint file, got {path!r}")
    state = load_checkpoint(file)["state"]
    if "model" not in state or "generated" not in state:
        raise ValueError(f"data_checkpoint must be a checkpoint of `fixpoint train online_offline`, got {path!r}")
    return state


def run_online(config: OnlineOfflineConfig, seed: int, device: Any = "cpu", steps: int | None = None
               ) -> OnlineOfflineState:
    """An online run of ``config`` (mode forced to online) for ``steps`` steps, in this process, no
    logging: its state holds the final policy and every labelled pair it generated."""
    online = dataclasses.replace(config, mode="online", data_source="sft", data_checkpoint=None)
    state = prepare(online, seed, device)
    for _ in range(steps or config.steps):
        train_step(state)
    return state


def build_offline_dataset(state: OnlineOfflineState, seed: int) -> None:
    """Fill ``state.dataset`` (and ``state.shuffle``) from ``config.data_source`` (see module doc)."""
    config = state.config
    pad_id = state.tokenizer.pad_token_id
    if config.data_source == "online_samples":
        if config.data_checkpoint is not None:
            generated = _load_checkpoint_state(config.data_checkpoint)["generated"]
        else:
            generated = run_online(config, seed, state.device, config.data_policy_steps or None).generated
        if not generated:
            raise ValueError("data_checkpoint must hold at least one generated batch, got none")
        state.dataset = PairSet.concat(generated, pad_id)
        state.shuffle = config.data_order == "shuffled"
        return
    behaviour = state.reference
    if config.data_source == "checkpoint":
        behaviour = copy.deepcopy(state.reference)
        behaviour.load_state_dict(_load_checkpoint_state(config.data_checkpoint)["model"])
    elif config.data_source == "online_policy":
        behaviour = run_online(config, seed, state.device, config.data_policy_steps or None).model
    behaviour.eval()
    sampler = torch.Generator(device=state.device).manual_seed(seed + 21)
    prompts = config.data_prompts or config.n_train
    parts, total, chunk = [], config.dataset_size, 256
    for start in range(0, total, chunk):
        size = min(chunk, total - start)
        index = torch.randint(prompts, (size,), generator=state.data_generator)
        ids, mask = state.prompts("train", index)
        sums = np.repeat(state.sums_train[index.numpy()], 2)
        pairs, _, _ = sample_labelled_pairs(
            behaviour, ids, mask, state.task.max_new_tokens, label_temperature=config.label_temperature,
            generator=sampler, label_generator=state.label_generator, temperature=config.data_temperature,
            reward_fn=lambda t, m, sums=sums: state.rewards(sums, t, m))
        pairs.prompt_index = index
        parts.append(pairs)
    state.dataset = PairSet.concat(parts, pad_id)
    state.shuffle = True


# ----------------------------------------------------------------------------- step
def _next_indices(state: OnlineOfflineState, B: int) -> torch.Tensor:
    """B dataset indices: consecutive slices of one permutation per epoch (a new one each epoch)."""
    D = state.dataset.size
    out = []
    while len(out) < B:
        if state.order is None or state.cursor >= D:
            state.order = torch.randperm(D, generator=state.data_generator) if state.shuffle else torch.arange(D)
            state.cursor = 0
        take = min(B - len(out), D - state.cursor)
        out += state.order[state.cursor: state.cursor + take].tolist()
        state.cursor += take
    return torch.tensor(out, dtype=torch.long)


def train_step(state: OnlineOfflineState) -> tuple[float, PairSet]:
    """One GPO step (online: sample → label → update; offline: next dataset batch → update).

    Returns the loss and the pairs used (prompt indices into the training prompts).
    """
    config, model = state.config, state.model
    B = config.batch_size
    if config.mode == "online":
        index = torch.randint(config.n_train, (B,), generator=state.data_generator)
        ids, mask = state.prompts("train", index)
        sums = np.repeat(state.sums_train[index.numpy()], 2)
        model.eval()
        pairs, _, _ = sample_labelled_pairs(
            model, ids, mask, state.task.max_new_tokens, label_temperature=config.label_temperature,
            generator=state.sample_generator, label_generator=state.label_generator,
            reward_fn=lambda t, m: state.rewards(sums, t, m))
        model.train()
        pairs.prompt_index = index
        state.generated.append(pairs)
    else:
        pairs = state.dataset.subset(_next_indices(state, B))
        ids, mask = state.prompts("train", pairs.prompt_index)
    batch = pairs.preference_batch(ids, mask)
    loss, _ = gpo_lm_loss(model, state.reference, batch, config.beta, config.kind, margin=config.margin)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    state.optimizer.step()
    state.step += 1
    return float(loss.detach()), pairs


# ----------------------------------------------------------------------------- trainer
def _checkpoint_state(state: OnlineOfflineState) -> dict[str, Any]:
    return {
        "model": state.model.state_dict(),
        "reference": state.reference.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "data_generator": generator_state(state.data_generator),
        "sample_generator": generator_state(state.sample_generator),
        "label_generator": generator_state(state.label_generator),
        "heldout": state.heldout,
        "heldout_reference": state.heldout_reference,
        "eval_reference_rewards": state.eval_reference_rewards,
        "dataset": state.dataset,
        "shuffle": state.shuffle,
        "order": state.order,
        "cursor": state.cursor,
        "generated": list(state.generated),
        "sft_accuracy": state.sft_accuracy,
    }


def train(config: OnlineOfflineConfig, run: Run) -> dict[str, Any]:
    """The ``fixpoint train online_offline`` entry point (checkpoint/resume via ``run.checkpointer``)."""
    # a resumed run reads π_SFT from its checkpoint instead of repeating the warm start
    state = prepare(config, run.seed, run.device, warm_start=not run.checkpointer.exists())
    saved = run.checkpointer.latest()
    if saved is not None:
        state.model.load_state_dict(saved["model"])
        state.reference.load_state_dict(saved["reference"])
        state.optimizer.load_state_dict(saved["optimizer"])
        for name in ("data_generator", "sample_generator", "label_generator"):
            restore_generator(getattr(state, name), saved[name])
        for name in ("heldout", "heldout_reference", "eval_reference_rewards", "dataset", "shuffle", "order",
                     "cursor", "sft_accuracy"):
            setattr(state, name, saved[name])
        state.generated = list(saved["generated"])
        state.step = saved["step"]
    else:
        _heldout_sets(state, run.seed)
        if config.mode == "offline":
            build_offline_dataset(state, run.seed)
    eval_generator = torch.Generator(device=state.device)
    last: dict[str, float] = {}
    if state.step == 0:
        eval_generator.manual_seed(run.seed + 100)
        last = evaluate(state, eval_generator)
        run.log.log(0, sft_accuracy=state.sft_accuracy, **last)
    losses: list[float] = []
    for step in range(state.step + 1, config.steps + 1):
        loss, _ = train_step(state)
        losses.append(loss)
        if step % config.log_every == 0 or step == config.steps:
            eval_generator.manual_seed(run.seed + 100 + step)  # evaluation never consumes training randomness
            last = evaluate(state, eval_generator)
            run.log.log(step, loss=float(np.mean(losses)), **last)
            losses = []
        if run.checkpointer.due(step) or step == config.steps:
            run.checkpointer.save(step, _checkpoint_state(state))
    return {"steps": config.steps, "mode": config.mode, "sft_accuracy": state.sft_accuracy, **last}


# ----------------------------------------------------------------------------- presets
def _preset(**changes: Any):
    def make() -> OnlineOfflineConfig:
        return OnlineOfflineConfig(**changes)

    make.__doc__ = f"online_offline: {changes}"
    return make


_QUICK = dict(n_train=400, n_test=48, sft_steps=40, sft_batch_size=64, steps=6, batch_size=8, eval_prompts=32,
              heldout_pairs=32, log_every=3)
_GPU = dict(model="base", n_digits=3, max_operand=500, n_train=20000, n_test=1000, sft_steps=1500,
            sft_batch_size=256, sft_lr=3e-4, steps=1000, batch_size=128, lr=1e-5, eval_prompts=1000,
            heldout_pairs=1000, log_every=50)

TRAINERS = [
    TrainerSpec(
        name="online_offline",
        description="online vs offline GPO/IPO on addition with a golden BT judge (+ coverage/quality/"
                    "online-samples ablations; KL, win rate, pair accuracy per row)",
        config_cls=OnlineOfflineConfig,
        presets={"default": _preset(), "quick": _preset(**_QUICK), "gpu": _preset(**_GPU),
                 "offline": _preset(mode="offline")},
        train=train, checkpoint_every=50)
]
