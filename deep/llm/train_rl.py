"""Language-model RL with verifiable rewards: pass@k / maj@k, RLOO, GRPO, AGRO and JEPO in one loop.

``fixpoint train passk|majk|rloo|grpo|agro|jepo`` (presets below). One step:

  1. draw ``prompts_per_step`` training prompts (a trainer-owned ``torch.Generator``);
  2. sample ``group_size`` = n completions per prompt (our KV-cache sampler,
     ``fixpoint_rl.deep.llm.sampling.sample``) from the policy — or, for AGRO, from the reference,
     a replay buffer of earlier generations, or half/half (``agro_data``);
  3. score them with the task's verifier (1 if the final answer is exact, else 0);
  4. advantages: LOO pass@k / maj@k (Tang, Zheng, Synnaeve, Munos, ICML 2025, arXiv 2503.19595),
     RLOO (Ahmadian et al. 2024, arXiv 2402.14740), GRPO (Shao et al. 2024, arXiv 2402.03300, with
     TRL 1.16's ``scale_rewards``), AGRO (Tang et al., arXiv 2503.19612) or JEPO's Jensen-bound
     weights (Tang et al., arXiv 2503.19618; the CoT is the scratchpad before the last ``>``, the
     ground-truth answer is teacher-forced after it);
  5. one AdamW step on the surrogate of ``fixpoint_rl.deep.llm.pg_losses`` / ``agro`` / ``jepo``.

Before RL the model is warm-started by supervised learning on the task's targets
(``fixpoint_rl.deep.llm.sft.supervised_warm_start``), stopped early (``sft_steps`` or
``sft_stop_at_accuracy``) so that RL has room; that model is also the KL reference π_ref
(``kl_coef`` > 0 adds the sequence-level penalty r − β log(π/π_ref); AGRO's β is ``agro_beta``).

Evaluation on held-out prompts (``eval_prompts`` × ``eval_samples`` samples at temperature 1):
pass@k for each k in ``eval_ks`` and maj@k with the unbiased estimators of
``fixpoint_rl.tabular.core.advantages`` (pass@1 = mean reward); also the held-out
answer log-likelihood bounds L⁽¹⁾ and L⁽ⁿ⁾ (n = ``eval_samples``) on scratchpad tasks.

Checkpoints hold the policy, the reference, the optimiser, both generators, the replay buffer and
the step: a killed run continues bitwise (CPU) from its last checkpoint.

Shapes: G prompts per step, n completions per prompt, T completion tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from ...envs.checks import check_int, check_scalar
from ...tabular.core.advantages import majority_at_k_estimate, pass_at_k_estimate
from ..config import Config
from ..registry import TrainerSpec
from ..runtime import Run, generator_state, restore_generator
from .agro import agro_loss
from .jepo import jepo_bound_estimate, jepo_loss, jepo_rl_loss
from .models import build_lm
from .pg_losses import compute_advantages, kl_penalized_rewards, policy_gradient_loss
from .sampling import sample, sequence_logprobs
from .sft import SFTConfig, supervised_warm_start
from .tasks import Example, TextTask, addition, multi_operand_sum
from .tokenizer import build_char_tokenizer, encode_prompts

__all__ = [
    "ALGORITHMS",
    "RLConfig",
    "RLState",
    "TRAINERS",
    "build_task",
    "compare_arms",
    "evaluate",
    "fork",
    "prepare",
    "rl_step",
    "train",
]

ALGORITHMS = ("passk", "majk", "rloo", "grpo", "agro", "jepo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLConfig(Config):
    """Settings of the verifiable-reward RL loop (every field can be set with ``--set``)."""

    algorithm: Literal["passk", "majk", "rloo", "grpo", "agro", "jepo"] = "passk"
    """Advantage estimator / objective."""
    task: Literal["addition", "multi_operand_sum"] = "addition"
    """Generated task: n-digit addition, or multi-operand sums with a scratchpad."""
    n_digits: int = 2
    """Digits per operand."""
    n_operands: int = 3
    """Operands (multi_operand_sum)."""
    scratchpad: bool = True
    """Running-sum scratchpad before '>' and the answer (multi_operand_sum; required by JEPO)."""
    max_operand: int = 0
    """If > 0, operands are drawn below this bound (e.g. 50 for 2-digit sums below 100)."""
    n_train: int = 2000
    """Training prompts."""
    n_test: int = 300
    """Held-out prompts."""
    model: str = "micro"
    """LM preset (nano, micro, small, base, large)."""
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    """Parameter dtype."""
    sft_steps: int = 150
    """Supervised warm-start steps (stopped early on purpose)."""
    sft_batch_size: int = 128
    """Warm-start batch size."""
    sft_lr: float = 2e-3
    """Warm-start AdamW learning rate."""
    sft_stop_at_accuracy: float | None = None
    """Stop the warm start once greedy test accuracy reaches this (None: run sft_steps)."""
    steps: int = 150
    """RL steps."""
    prompts_per_step: int = 16
    """G prompts per step."""
    group_size: int = 8
    """n completions per prompt."""
    k: int = 0
    """k of pass@k training (0: k = group_size; k < n uses the unbiased subset estimator)."""
    centered: bool = False
    """Centre the pass@k / maj@k advantages (biased, denser)."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """GRPO's reward scaling (TRL 1.16)."""
    lr: float = 3e-4
    """RL AdamW learning rate."""
    grad_clip: float = 1.0
    """Max global gradient norm (0: no clipping)."""
    temperature: float = 1.0
    """Sampling temperature (training and evaluation)."""
    kl_coef: float = 0.0
    """β of the KL penalty toward the warm-started reference (not AGRO, which has agro_beta)."""
    agro_beta: float = 0.1
    """AGRO's KL coefficient β."""
    agro_data: Literal["on_policy", "reference", "replay", "mixed"] = "on_policy"
    """Where AGRO's generations come from."""
    replay_steps: int = 8
    """Replay buffer length in steps (agro_data=replay)."""
    agro_estimator: Literal["agro", "naive"] = "agro"
    """AGRO, or naive off-policy PG with a reward-only baseline."""
    jepo_bound: Literal["single", "multi"] = "multi"
    """JEPO's single- or multi-sample bound."""
    jepo_sup_coef: float = 1.0
    """β_sup, weight of the answer-likelihood term."""
    jepo_cot_coef: float = 1.0
    """Weight of the CoT (REINFORCE) term; 0 gives SFT on the answer after sampled CoTs."""
    jepo_advantage_normalization: Literal["none", "std_clip"] = "none"
    """App. B advantage normalisation."""
    jepo_length_normalization: Literal["none", "cot", "cot_and_answer"] = "none"
    """App. B length normalisation of the CoT log-probability."""
    jepo_format_penalty: float = 0.0
    """App. B format penalty p for completions without the answer separator."""
    jepo_combined_rl: bool = False
    """Combined JEPO+RL: RLOO on the verifier where a group has a correct sample, else JEPO."""
    eval_every: int = 50
    """RL steps between held-out evaluations (also at step 0 and the last step)."""
    eval_prompts: int = 300
    """Held-out prompts per evaluation."""
    eval_samples: int = 16
    """Samples per held-out prompt (n of the unbiased pass@k / maj@k estimators)."""
    eval_ks: tuple[int, ...] = (1, 4, 8)
    """k's of the reported pass@k and maj@k."""
    log_every: int = 10
    """Steps between CSV rows."""

    def validate(self) -> None:
        for name in ("n_digits", "n_operands", "n_train", "n_test", "sft_steps", "sft_batch_size", "steps",
                     "prompts_per_step", "eval_every", "eval_prompts", "eval_samples", "log_every", "replay_steps"):
            check_int(name, getattr(self, name), low=1)
        check_int("group_size", self.group_size, low=2)
        check_int("max_operand", self.max_operand, low=0)
        check_int("k", self.k, low=0, high=self.group_size)
        for name in ("sft_lr", "lr", "agro_beta"):
            check_scalar(name, getattr(self, name), low=0.0, low_inclusive=False)
        for name in ("grad_clip", "kl_coef", "jepo_sup_coef", "jepo_cot_coef", "jepo_format_penalty"):
            check_scalar(name, getattr(self, name), low=0.0)
        check_scalar("temperature", self.temperature, low=0.0, low_inclusive=False)
        if self.sft_stop_at_accuracy is not None:
            check_scalar("sft_stop_at_accuracy", self.sft_stop_at_accuracy, low=0.0, high=1.0)
        for k in self.eval_ks:
            check_int("eval_ks", k, low=1, high=self.eval_samples)
        if self.eval_prompts > self.n_test:
            raise ValueError(f"eval_prompts must be ≤ n_test={self.n_test}, got {self.eval_prompts}")
        if self.algorithm == "majk" and self.kl_coef > 0:
            raise ValueError(
                f"kl_coef must be 0 for algorithm 'majk' (a per-sample KL penalty would give equal answers "
                f"unequal rewards), got {self.kl_coef}"
            )
        if self.algorithm == "jepo" and not (self.task == "multi_operand_sum" and self.scratchpad):
            raise ValueError(
                f"task must be 'multi_operand_sum' with scratchpad=True for algorithm 'jepo', got {self.task!r}"
            )


# ----------------------------------------------------------------------------- presets
def _preset(algorithm: str, **changes: Any):
    def make() -> RLConfig:
        return RLConfig(algorithm=algorithm, **changes)

    make.__doc__ = f"{algorithm}: {changes}"
    return make


_ADDITION = dict(task="addition", n_digits=2, max_operand=50, n_train=2200, n_test=300)
_SCRATCHPAD = dict(task="multi_operand_sum", n_operands=3, n_digits=1, n_train=700, n_test=200,
                   eval_prompts=200, sft_steps=60, group_size=4, k=0)
_QUICK = dict(model="nano", n_train=400, n_test=40, sft_steps=40, sft_batch_size=64, steps=6,
              prompts_per_step=4, group_size=4, eval_every=3, eval_prompts=16, eval_samples=8,
              eval_ks=(1, 4), log_every=2)
_GPU = dict(model="base", task="addition", n_digits=4, n_train=20000, n_test=1000, sft_steps=2000,
            sft_batch_size=256, steps=300, prompts_per_step=64, group_size=8, eval_every=50,
            eval_prompts=1000, eval_samples=32, eval_ks=(1, 8, 32), lr=1e-5, sft_lr=3e-4)


def _presets(algorithm: str) -> dict[str, Any]:
    base = dict(_ADDITION)
    if algorithm == "jepo":
        base = dict(_SCRATCHPAD)
    presets = {
        "default": _preset(algorithm, **base),
        "scratchpad": _preset(algorithm, **_SCRATCHPAD),
        "quick": _preset(algorithm, **{**base, **_QUICK}),
        "gpu": _preset(algorithm, **({**_GPU, **{k: v for k, v in _SCRATCHPAD.items() if k in ("task", "n_operands")},
                                      "n_digits": 2} if algorithm == "jepo" else _GPU)),
    }
    if algorithm == "agro":
        for data in ("reference", "replay", "mixed"):
            presets[f"{data}"] = _preset(algorithm, **base, agro_data=data)
    return presets


# ----------------------------------------------------------------------------- pieces
def build_task(config: RLConfig, seed: int) -> TextTask:
    """The generated task of ``config`` (examples drawn from ``seed``)."""
    if config.task == "addition":
        if not config.max_operand:
            return addition(config.n_digits, n_train=config.n_train, n_test=config.n_test, seed=seed)
        # operands below max_operand (e.g. < 50: sums have at most 2 digits less often), all pairs
        # shuffled by the seed and cut into disjoint train/test prompts
        bound = config.max_operand
        if bound > 10**config.n_digits or config.n_train + config.n_test > bound * bound:
            raise ValueError(
                f"max_operand must be ≤ 10^n_digits with n_train + n_test ≤ max_operand² = {bound * bound}, "
                f"got max_operand={bound}, n_train + n_test = {config.n_train + config.n_test}"
            )
        order = np.random.default_rng([seed, 0xADD]).permutation(bound * bound)
        examples = [Example(f"{a}+{b}=", str(a + b), str(a + b)) for a, b in (divmod(int(i), bound) for i in order)]
        train = tuple(examples[: config.n_train])
        test = tuple(examples[config.n_train: config.n_train + config.n_test])
        return TextTask(f"addition(n_digits={config.n_digits},operands<{bound})", train, test,
                        max_new_tokens=len(str(2 * (bound - 1))) + 1)
    return multi_operand_sum(config.n_operands, config.n_digits, scratchpad=config.scratchpad,
                             n_train=config.n_train, n_test=config.n_test, seed=seed)


@dataclasses.dataclass(eq=False)
class RLState:
    """Everything the loop mutates (and a checkpoint holds)."""

    model: Any
    reference: Any
    tokenizer: Any
    task: TextTask
    optimizer: torch.optim.Optimizer
    data_generator: torch.Generator
    sample_generator: torch.Generator
    replay: list = dataclasses.field(default_factory=list)
    step: int = 0
    sft_accuracy: float = float("nan")


def prepare(config: RLConfig, seed: int, device: Any = "cpu") -> RLState:
    """Task, tokenizer, model warm-started by SFT (deterministic from ``seed``), frozen reference."""
    task = build_task(config, seed)
    tokenizer = build_char_tokenizer()
    model = build_lm(config.model, len(tokenizer), seed, dtype=config.dtype, device=device)
    model.train()
    result = supervised_warm_start(
        model, tokenizer, task,
        SFTConfig(steps=config.sft_steps, batch_size=config.sft_batch_size, lr=config.sft_lr,
                  eval_every=max(1, config.sft_steps // 4), eval_examples=min(100, config.n_test),
                  stop_at_accuracy=config.sft_stop_at_accuracy, seed=seed),
    )
    reference = build_lm(config.model, len(tokenizer), seed, dtype=config.dtype, device=device)
    reference.load_state_dict(model.state_dict())
    reference.eval().requires_grad_(False)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    device = next(model.parameters()).device
    data_generator = torch.Generator().manual_seed(seed + 1)
    sample_generator = torch.Generator(device=device).manual_seed(seed + 2)
    return RLState(model, reference, tokenizer, task, optimizer, data_generator, sample_generator,
                   sft_accuracy=result.accuracy)


def _decode(tokenizer, tokens, mask) -> list[str]:
    """Completions as text (special tokens dropped): one table lookup per token, the same strings as
    ``decode_completions`` for the character tokenizer (checked in the tests), without a tokenizer
    call per row."""
    table = getattr(tokenizer, "_fixpoint_characters", None)
    if table is None:
        special = set(tokenizer.all_special_ids)
        table = ["" if i in special else token for i, token in
                 enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))]
        tokenizer._fixpoint_characters = table
    return ["".join(table[t] for t, keep in zip(row, keep_row) if keep)
            for row, keep_row in zip(tokens.tolist(), mask.tolist())]


def _answer_labels(task: TextTask, texts: list[str], n: int) -> torch.Tensor:
    """Integer labels of the extracted answers, per group of n (equal answer ↔ equal label)."""
    labels = []
    for start in range(0, len(texts), n):
        seen: dict[str, int] = {}
        labels.append([seen.setdefault(task.extract_answer(t), len(seen)) for t in texts[start:start + n]])
    return torch.tensor(labels, dtype=torch.long)


def _left_pad(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _right_pad(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids.to(device), mask.to(device)


def split_cot(tokenizer, samples, answers: list[str]):
    """Split sampled completions into CoT (through the last '>') and the teacher-forced answer.

    Returns ``(cot_ids, cot_mask, cot_lengths, answer_prompt_ids, answer_prompt_mask, answer_ids,
    answer_mask, well_formatted)``: the CoT as a right-padded completion of the prompt, the prompt
    ⊕ CoT left-padded as the answer's prompt, the gold answer + ``<eos>`` [rows, A], and whether the
    sample had the separator (its bound terms are masked out otherwise).
    """
    separator = tokenizer.convert_tokens_to_ids(">")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    device = samples.tokens.device
    cots, prefixes, golds, formatted = [], [], [], []
    for row, mask, prompt, prompt_mask, answer in zip(samples.tokens.tolist(), samples.mask.tolist(),
                                                     samples.prompt_ids.tolist(), samples.prompt_mask.tolist(), answers):
        tokens = [t for t, m in zip(row, mask) if m and t != eos]
        cut = max((i for i, t in enumerate(tokens) if t == separator), default=-1)
        ok = cut >= 0
        cot = tokens[:cut + 1] if ok else tokens
        cots.append(cot)
        prefixes.append([t for t, m in zip(prompt, prompt_mask) if m] + cot)
        golds.append(tokenizer.convert_tokens_to_ids(list(answer)) + [eos])
        formatted.append(ok)
    cot_ids, cot_mask = _right_pad(cots, pad, device)
    prefix_ids, prefix_mask = _left_pad(prefixes, pad, device)
    gold_ids, gold_mask = _right_pad(golds, pad, device)
    lengths = torch.tensor([max(1, len(c)) for c in cots], device=device)
    return cot_ids, cot_mask, lengths, prefix_ids, prefix_mask, gold_ids, gold_mask, torch.tensor(formatted, device=device)


def _sequence_logprobs_or_zero(model, prompt_ids, prompt_mask, ids, mask):
    """sequence_logprobs, with 0 for rows whose completion is empty (mask all 0)."""
    empty = mask.sum(-1) == 0
    if bool(empty.all()):
        return torch.zeros(ids.shape[0], device=ids.device, dtype=next(model.parameters()).dtype)
    safe = mask.clone()
    safe[empty, 0] = 1
    values = sequence_logprobs(model, prompt_ids, prompt_mask, ids, safe)
    return torch.where(empty, torch.zeros_like(values), values)


def rl_step(config: RLConfig, state: RLState) -> dict[str, float]:
    """One RL step (sample → verify → advantages → update). Returns training metrics."""
    model, task, tokenizer = state.model, state.task, state.tokenizer
    device = next(model.parameters()).device
    G, n = config.prompts_per_step, config.group_size
    index = torch.randint(len(task.train), (G,), generator=state.data_generator).tolist()
    examples = [task.train[i] for i in index]
    prompt_ids, prompt_mask = encode_prompts(tokenizer, [e.prompt for e in examples], device=device)
    sampler = model
    if config.algorithm == "agro" and config.agro_data == "reference":
        sampler = state.reference
    model.eval()
    drawn = sample(sampler, prompt_ids, prompt_mask, task.max_new_tokens, n=n, temperature=config.temperature,
                   stop_at_eos=True, generator=state.sample_generator)
    if config.algorithm == "agro" and config.agro_data == "mixed":
        half = sample(state.reference, prompt_ids, prompt_mask, task.max_new_tokens, n=n,
                      temperature=config.temperature, stop_at_eos=True, generator=state.sample_generator)
        drawn = _mix_groups(drawn, half, n, tokenizer.pad_token_id)
    model.train()
    if config.algorithm == "agro" and config.agro_data == "replay":
        state.replay.append((examples, drawn))
        state.replay = state.replay[-config.replay_steps:]
        examples, drawn = _draw_replay(state, G, n, tokenizer.pad_token_id)
    texts = _decode(tokenizer, drawn.tokens, drawn.mask)
    group_examples = [e for e in examples for _ in range(n)]
    rewards = torch.as_tensor(task.rewards(group_examples, texts), dtype=torch.float64).view(G, n)
    metrics: dict[str, float] = {"reward": float(rewards.mean())}

    if config.algorithm == "jepo":
        loss = _jepo_step_loss(config, state, drawn, group_examples, rewards, G, n, metrics)
    else:
        logprobs = sequence_logprobs(model, drawn.prompt_ids, drawn.prompt_mask, drawn.tokens, drawn.mask).view(G, n)
        needs_reference = config.algorithm == "agro" or config.kl_coef > 0
        if needs_reference:
            with torch.no_grad():
                ref_logprobs = sequence_logprobs(state.reference, drawn.prompt_ids, drawn.prompt_mask,
                                                 drawn.tokens, drawn.mask).view(G, n)
            metrics["log_ratio"] = float((logprobs.detach() - ref_logprobs).mean())
        if config.algorithm == "agro":
            loss = agro_loss(logprobs.double(), ref_logprobs.double(), rewards, config.agro_beta,
                             estimator=config.agro_estimator)
        else:
            scored = rewards
            if config.kl_coef > 0:
                scored = kl_penalized_rewards(rewards, logprobs.double(), ref_logprobs.double(), config.kl_coef)
            estimator = {"passk": "pass_at_k", "majk": "majority_vote", "rloo": "rloo", "grpo": "grpo"}[config.algorithm]
            answers = _answer_labels(task, texts, n) if config.algorithm == "majk" else None
            advantages = compute_advantages(estimator, scored, answers=answers, k=config.k or None,
                                            centered=config.centered, scale_rewards=config.scale_rewards)
            loss = policy_gradient_loss(logprobs, advantages.to(logprobs.dtype))
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    state.optimizer.step()
    metrics["loss"] = float(loss.detach())
    state.step += 1
    return metrics


def _jepo_step_loss(config, state, drawn, group_examples, rewards, G, n, metrics):
    model, tokenizer = state.model, state.tokenizer
    answers = [e.answer for e in group_examples]
    cot_ids, cot_mask, cot_lengths, prefix_ids, prefix_mask, gold_ids, gold_mask, formatted = split_cot(
        tokenizer, drawn, answers)
    cot_logprobs = _sequence_logprobs_or_zero(model, drawn.prompt_ids, drawn.prompt_mask, cot_ids, cot_mask).view(G, n)
    answer_logprobs = sequence_logprobs(model, prefix_ids, prefix_mask, gold_ids, gold_mask).view(G, n)
    metrics["bound"] = float(jepo_bound_estimate(answer_logprobs.detach(), config.jepo_bound).mean())
    metrics["formatted"] = float(formatted.float().mean())
    options = dict(
        sup_coef=config.jepo_sup_coef,
        advantage_normalization=config.jepo_advantage_normalization,
        length_normalization=config.jepo_length_normalization,
        cot_lengths=cot_lengths.view(G, n),
        answer_lengths=gold_mask.sum(-1).view(G, n),
        well_formatted=formatted.view(G, n),
        format_penalty=config.jepo_format_penalty,
    )
    cot_term = cot_logprobs * config.jepo_cot_coef + cot_logprobs.detach() * (1.0 - config.jepo_cot_coef)
    if config.jepo_combined_rl:
        completion = sequence_logprobs(model, drawn.prompt_ids, drawn.prompt_mask, drawn.tokens, drawn.mask).view(G, n)
        return jepo_rl_loss(cot_term, answer_logprobs, completion, rewards.to(completion.dtype),
                            bound=config.jepo_bound, **options)
    return jepo_loss(cot_term, answer_logprobs, bound=config.jepo_bound, **options)


def _mix_groups(first, second, n, pad):
    """Samples whose groups take the first ⌈n/2⌉ rows of ``first`` and the rest from ``second``."""
    from .sampling import Samples

    rows = first.tokens.shape[0]
    take_first = (torch.arange(rows, device=first.tokens.device) % n) < (n + 1) // 2
    width = max(first.tokens.shape[1], second.tokens.shape[1])

    def widen(x, value):
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    pick = take_first[:, None]
    return Samples(
        tokens=torch.where(pick, widen(first.tokens, pad), widen(second.tokens, pad)),
        mask=torch.where(pick, widen(first.mask, 0), widen(second.mask, 0)),
        logprobs=torch.where(pick, widen(first.logprobs, 0.0), widen(second.logprobs, 0.0)),
        prompt_ids=first.prompt_ids,
        prompt_mask=first.prompt_mask,
    )


def _draw_replay(state: RLState, G: int, n: int, pad: int):
    """G groups drawn uniformly from the replay buffer (each an earlier step's prompt and its n samples)."""
    from .sampling import Samples

    choices = torch.randint(len(state.replay), (G,), generator=state.data_generator).tolist()
    groups = torch.randint(G, (G,), generator=state.data_generator).tolist()
    examples, parts = [], []
    for step_index, group in zip(choices, groups):
        step_examples, samples = state.replay[step_index]
        examples.append(step_examples[group])
        rows = slice(group * n, (group + 1) * n)
        parts.append((samples.tokens[rows], samples.mask[rows], samples.logprobs[rows],
                      samples.prompt_ids[rows], samples.prompt_mask[rows]))
    width = max(p[0].shape[1] for p in parts)
    prompt_width = max(p[3].shape[1] for p in parts)

    def right(x, value):
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    def left(x, value):
        return torch.nn.functional.pad(x, (prompt_width - x.shape[1], 0), value=value)

    return examples, Samples(
        tokens=torch.cat([right(p[0], pad) for p in parts]),
        mask=torch.cat([right(p[1], 0) for p in parts]),
        logprobs=torch.cat([right(p[2], 0.0) for p in parts]),
        prompt_ids=torch.cat([left(p[3], pad) for p in parts]),
        prompt_mask=torch.cat([left(p[4], 0) for p in parts]),
    )


def evaluate(config: RLConfig, state: RLState, generator: torch.Generator | int = 0) -> dict[str, float]:
    """Held-out pass@k and maj@k (unbiased estimators; + JEPO's answer-likelihood bounds)."""
    model, task, tokenizer = state.model, state.task, state.tokenizer
    device = next(model.parameters()).device
    examples = list(task.test[: config.eval_prompts])
    m = config.eval_samples
    was_training = model.training
    model.eval()
    rewards, labels, bounds_1, bounds_n = [], [], [], []
    for start in range(0, len(examples), 64):
        chunk = examples[start:start + 64]
        ids, mask = encode_prompts(tokenizer, [e.prompt for e in chunk], device=device)
        drawn = sample(model, ids, mask, task.max_new_tokens, n=m, temperature=config.temperature,
                       stop_at_eos=True, generator=generator)
        texts = _decode(tokenizer, drawn.tokens, drawn.mask)
        rows = [e for e in chunk for _ in range(m)]
        rewards.append(torch.as_tensor(task.rewards(rows, texts)).view(len(chunk), m))
        labels.append(_answer_labels(task, texts, m))
        if task.answer_separator is not None:  # scratchpad tasks: the answer likelihood after the CoT
            with torch.no_grad():
                _, _, _, prefix_ids, prefix_mask, gold_ids, gold_mask, _ = split_cot(tokenizer, drawn, [e.answer for e in rows])
                answer = sequence_logprobs(model, prefix_ids, prefix_mask, gold_ids, gold_mask).view(len(chunk), m).double()
            bounds_1.append(jepo_bound_estimate(answer, "single"))
            bounds_n.append(jepo_bound_estimate(answer, "multi"))
    if was_training:
        model.train()
    rewards_all = torch.cat(rewards).double()
    labels_all = torch.cat(labels)
    metrics = {}
    for k in config.eval_ks:
        metrics[f"test_pass_at_{k}"] = float(pass_at_k_estimate(rewards_all, k).mean())
        if k > 1 and _subsets_ok(m, k):
            metrics[f"test_maj_at_{k}"] = float(majority_at_k_estimate(rewards_all, labels_all, k).mean())
    if bounds_1:
        metrics["test_bound_1"] = float(torch.cat(bounds_1).mean())
        metrics[f"test_bound_{m}"] = float(torch.cat(bounds_n).mean())
    return metrics


def _subsets_ok(n: int, k: int) -> bool:
    import math

    return math.comb(n, k) <= 20_000


def fork(config: RLConfig, state: RLState, seed: int) -> RLState:
    """A fresh copy of ``state``'s policy (same weights, new optimiser, generators from ``seed``),
    sharing its reference, task and tokenizer: arms compared from one warm start."""
    device = next(state.model.parameters()).device
    model = build_lm(config.model, len(state.tokenizer), 0, dtype=config.dtype, device=device)
    model.load_state_dict(state.model.state_dict())
    model.train()
    return RLState(model=model, reference=state.reference, tokenizer=state.tokenizer, task=state.task,
                   optimizer=torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0),
                   data_generator=torch.Generator().manual_seed(seed + 1),
                   sample_generator=torch.Generator(device=device).manual_seed(seed + 2),
                   sft_accuracy=state.sft_accuracy)


def compare_arms(base: RLConfig, arms: dict[str, dict[str, Any]], seed: int,
                 extra_eval=None) -> list[dict[str, Any]]:
    """Train every arm (``RLConfig`` overrides of ``base``) from ONE shared warm start of ``seed``.

    The arms share the SFT model, the training prompts and the sampler seeds (common random
    numbers), so their differences are the algorithms'. Evaluations at step 0, every
    ``eval_every`` steps and the last step. ``extra_eval(config, state) -> dict`` adds metrics.
    Returns long-format rows ``{arm, seed, step, metric, value}``.
    """
    shared = prepare(base, seed)
    rows: list[dict[str, Any]] = []
    for name, overrides in arms.items():
        config = dataclasses.replace(base, **overrides)
        state = fork(config, shared, seed)
        for step in range(0, config.steps + 1):
            if step > 0:
                rl_step(config, state)
            if step % config.eval_every == 0 or step == config.steps:
                device = next(state.model.parameters()).device
                metrics = evaluate(config, state, torch.Generator(device=device).manual_seed(seed + 3 + step))
                if extra_eval is not None:
                    metrics.update(extra_eval(config, state))
                rows += [dict(arm=name, seed=seed, step=step, metric=key, value=value)
                         for key, value in metrics.items()]
    return rows


# ----------------------------------------------------------------------------- trainer
def train(config: RLConfig, run: Run) -> dict[str, Any]:
    """The ``fixpoint train`` entry point (checkpoint/resume via ``run.checkpointer``)."""
    state = prepare(config, run.seed, run.device)
    eval_generator = torch.Generator(device=next(state.model.parameters()).device)
    saved = run.checkpointer.latest()
    if saved is not None:
        state.model.load_state_dict(saved["model"])
        state.reference.load_state_dict(saved["reference"])
        state.optimizer.load_state_dict(saved["optimizer"])
        restore_generator(state.data_generator, saved["data_generator"])
        restore_generator(state.sample_generator, saved["sample_generator"])
        state.replay = saved["replay"]
        state.step = saved["step"]
    if state.step == 0:
        eval_generator.manual_seed(run.seed + 3)
        run.log.log(0, sft_accuracy=state.sft_accuracy, **evaluate(config, state, eval_generator))
    last: dict[str, float] = {}
    for step in range(state.step + 1, config.steps + 1):
        metrics = rl_step(config, state)
        row: dict[str, float] = {}
        if step % config.log_every == 0 or step == config.steps:
            row.update(metrics)
        if step % config.eval_every == 0 or step == config.steps:
            eval_generator.manual_seed(run.seed + 3 + step)  # evaluation never consumes training randomness
            last = evaluate(config, state, eval_generator)
            row.update(last)
        if row:
            run.log.log(step, **row)
        if run.checkpointer.due(step) or step == config.steps:
            run.checkpointer.save(step, {
                "model": state.model.state_dict(),
                "reference": state.reference.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "data_generator": generator_state(state.data_generator),
                "sample_generator": generator_state(state.sample_generator),
                "replay": state.replay,
            })
    return {"steps": config.steps, "sft_accuracy": state.sft_accuracy, **last}


_DESCRIPTIONS = {
    "passk": "pass@k training with leave-one-out advantages (unbiased k-subset estimator for n > k)",
    "majk": "majority-vote (maj@k) training with leave-one-out advantages",
    "rloo": "mean-reward RL with the RLOO baseline",
    "grpo": "GRPO group-normalised advantages (TRL 1.16 scale_rewards options)",
    "agro": "AGRO on on-policy, reference, replayed or mixed generations (or naive off-policy PG)",
    "jepo": "JEPO: CoT as a latent, Jensen / multi-sample bounds on the answer likelihood",
}

TRAINERS = [
    TrainerSpec(name=name, description=_DESCRIPTIONS[name], config_cls=RLConfig, presets=_presets(name),
                train=train, checkpoint_every=25)
    for name in ALGORITHMS
]
