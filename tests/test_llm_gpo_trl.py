"""Peer check: our GPO loss on LM margins equals TRL 1.16 ``DPOTrainer``'s loss AND gradient.

TRL's DPO-family losses are inline in ``DPOTrainer._compute_loss`` (no function to call), so the
trainer itself is built here, offline: our character tokenizer, from-config ``nano`` Llamas (the
policy and a *different* reference, so margins are non-zero), an in-memory ``datasets.Dataset``
with completions of different lengths, and an explicit ``ref_model`` (TRL cannot build one from
a config-only model). One collated batch from TRL's own dataloader goes through TRL's
``compute_loss`` and, re-expressed as left-padded prompts + right-padded completions, through
:func:`fixpoint_rl.deep.llm.gpo.trl_dpo_loss` (GPO losses via ``tabular.core.preference_losses``:
sigmoid = logistic(β), hinge = hinge(β), ipo = squared(2β) on per-token-averaged margins × 1/(4β²)).

TRL's ``DPOConfig`` defaults to ``bf16=True``; the test sets ``bf16=False`` so that both sides
compute in the models' own precision (see the comment at the config).

Tolerance: both sides run the same float64 weights, but transformers' RMSNorm computes in float32
even in a float64 model and TRL's fused LM head tiles the projection differently from our
one-pass cross-entropy, so log-probabilities agree to float32 round-off (~1e-7 relative); losses
and gradients are compared at 1e-5 relative to the largest gradient coordinate.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from fixpoint_rl.deep.llm.gpo import PreferenceBatch, preference_batch_from_trl, trl_dpo_loss, trl_loss_spec
from fixpoint_rl.deep.llm.models import build_lm
from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer

torch.set_num_threads(1)

ALPHABET = "0123456789+=abc"
DATA = {
    "prompt": ["1+2=", "33+4=", "5=", "12+7=", "9+9=", "4+40="],
    "chosen": ["3", "37", "5a", "19", "18", "44bc"],
    "rejected": ["4ab", "3", "c", "20", "181", "4"],
}
BETA = 0.3


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer(ALPHABET)


def _parameters(model):
    return [p for p in model.parameters() if p.requires_grad]


def _flat_grad(model):
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in _parameters(model)])


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_gpo_loss_and_gradient_equal_trl_dpo_trainer(tmp_path, tokenizer, loss_type):
    policy = build_lm("nano", len(tokenizer), seed=0, dtype="float64")
    reference = build_lm("nano", len(tokenizer), seed=1, dtype="float64")
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=len(DATA["prompt"]), loss_type=[loss_type],
                     beta=BETA, report_to=[], use_cpu=True, save_strategy="no", dataloader_num_workers=0, seed=0,
                     max_length=None, precompute_ref_log_probs=False,
                     bf16=False)  # DPOConfig defaults to bf16=True: the prepared ref_model then runs under
    # bf16 autocast even on CPU with float64 weights (log-probs off by ~1e-3), while compute_loss
    # called outside training_step runs the policy in float64
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_dict(DATA),
                         processing_class=tokenizer)
    inputs = next(iter(trainer.get_train_dataloader()))
    batch = preference_batch_from_trl(inputs)
    assert batch.size == len(DATA["prompt"])
    assert len(set(batch.chosen_mask.sum(-1).tolist())) > 1  # lengths differ: 'mean' ≠ 'sum' matters

    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=True)
    trl_loss = trainer.compute_loss(model, inputs)
    trl_loss.backward()
    trl_grad = _flat_grad(model).clone()

    model.zero_grad(set_to_none=True)
    ours = trl_dpo_loss(model, trainer.ref_model, batch, BETA, loss_type)
    ours.backward()
    our_grad = _flat_grad(model)

    scale = float(trl_grad.abs().max())
    assert scale > 1e-4  # a vanishing gradient would make the comparison vacuous
    torch.testing.assert_close(ours.double(), trl_loss.double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(our_grad, trl_grad, rtol=0, atol=1e-5 * scale)
    assert float(trl_loss.detach()) > 0  # the hinge is active: its gradient is not trivially 0


def test_trl_mapping_and_margin_mode_matter(tokenizer):
    """The ipo mapping needs per-token-averaged margins: summed ones give a different loss."""
    from fixpoint_rl.deep.llm.gpo import gpo_lm_loss

    assert trl_loss_spec("ipo", 0.25) == trl_loss_spec("ipo", 0.25)
    spec = trl_loss_spec("ipo", 0.25)
    assert (spec.kind, spec.beta, spec.margin, spec.scale) == ("squared", 0.5, "mean", 4.0)
    assert trl_loss_spec("sigmoid", 0.1).kind == "logistic" and trl_loss_spec("hinge", 0.1).margin == "sum"
    policy = build_lm("nano", len(tokenizer), seed=0, dtype="float64")
    reference = build_lm("nano", len(tokenizer), seed=1, dtype="float64")
    enc = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompts = torch.tensor(enc(["1+2=", "3+4="]))
    chosen = torch.tensor([[3, 4, 5], [6, 7, 0]])
    rejected = torch.tensor([[8, 0, 0], [9, 10, 0]])
    batch = PreferenceBatch(prompts, torch.ones_like(prompts), chosen, torch.tensor([[1, 1, 1], [1, 1, 0]]),
                            rejected, torch.tensor([[1, 0, 0], [1, 1, 0]]))
    mean, _ = gpo_lm_loss(policy, reference, batch, 0.5, "ipo", margin="mean")
    total, _ = gpo_lm_loss(policy, reference, batch, 0.5, "squared", margin="sum")
    assert abs(float(mean.detach()) - float(total.detach())) > 1e-3
    with pytest.raises(ValueError, match="loss_type"):
        trl_loss_spec("robust", 0.1)
    with pytest.raises(ValueError, match="margin"):
        gpo_lm_loss(policy, reference, batch, 0.5, "dpo", margin="avg")
    with pytest.raises(ValueError, match="beta"):
        trl_loss_spec("ipo", 0.0)
