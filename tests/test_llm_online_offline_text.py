"""Online vs offline GPO on free-text addition (``deep.llm.online_offline_text``): estimators and data.

Oracles:

* the classification accuracy of the implicit reward against a hand computation (ties ½);
* the golden reward / Bradley–Terry judge against hand values;
* the sequence log-ratio KL estimator against the EXACT KL(π‖π_ref) of two ``nano`` LMs on an
  enumerable task (every response enumerated): the sample mean must lie within 4 exact standard
  errors σ/√n of the exact KL, σ² = Var_{y~π}[log π/π_ref] computed by enumeration too (a
  two-sided 4σ CLT band: a false alarm has probability ≈ 6e-5; n = 2000 samples per prompt);
* on-policy pairs: the empirical distribution of the 2B sampled responses matches π_θ by
  enumeration (Pearson χ² with X·(N − 1) degrees of freedom, rejected below p = 1e-4), and the
  labels' win frequency matches Σ P(first ≻ second) within 4 binomial standard deviations;
* the online trainer's pairs are the current policy's samples (the same pairs re-drawn from the
  pre-step policy with the same generator states, tensor for tensor);
* the offline dataset is fixed: every epoch consumes exactly the dataset's pairs, which never change;
* offline training on an online run's samples in their original order reproduces the online run
  bit for bit (same dataset, same parameters);
* bitwise resume after an interruption (``deep.runtime.assert_resume_bitwise``), online and offline.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from fixpoint_rl.deep.llm import online_offline_text as oot
from fixpoint_rl.deep.llm.models import build_lm
from fixpoint_rl.deep.llm.sampling import enumerate_logprobs, sample, sequence_logprobs
from fixpoint_rl.deep.llm.tasks import enumerable_task
from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
from fixpoint_rl.deep.runtime import assert_resume_bitwise, generator_state, restore_generator

torch.set_num_threads(1)

# a tiny text configuration: SFT 20 steps, 6 GPO steps of 8 pairs (about a second per run)
TINY = dict(n_train=300, n_test=24, sft_steps=20, sft_batch_size=32, steps=6, batch_size=8, eval_prompts=16,
            heldout_pairs=16, log_every=2)


# ----------------------------------------------------------------------------- hand computations
def test_pairwise_accuracy_matches_hand_computation():
    # margins β·[(π_w − ref_w) − (π_l − ref_l)] with β = 0.5:
    # pair 0: (−1 − −2) − (−3 − −1) = 1 + 2 = 3 > 0 → 1
    # pair 1: (−2 − −1) − (−1 − −1) = −1 < 0 → 0
    # pair 2: (−1 − −1) − (−2 − −2) = 0 → ½ (tie)
    # pair 3: (−0.5 − −1) − (−1 − −1.2) = 0.5 − 0.2 = 0.3 > 0 → 1
    policy_w = np.array([-1.0, -2.0, -1.0, -0.5])
    policy_l = np.array([-3.0, -1.0, -2.0, -1.0])
    ref_w = np.array([-2.0, -1.0, -1.0, -1.0])
    ref_l = np.array([-1.0, -1.0, -2.0, -1.2])
    assert oot.pairwise_accuracy(policy_w, policy_l, ref_w, ref_l, 0.5) == pytest.approx(2.5 / 4, abs=0)
    # swapping winners and losers mirrors the decided pairs; the tie stays ½
    assert oot.pairwise_accuracy(policy_l, policy_w, ref_l, ref_w, 0.5) == pytest.approx(1.5 / 4, abs=0)
    with pytest.raises(ValueError, match="beta"):
        oot.pairwise_accuracy(policy_w, policy_l, ref_w, ref_l, 0.0)
    with pytest.raises(ValueError, match="same shape|one shape"):
        oot.pairwise_accuracy(policy_w, policy_l[:2], ref_w, ref_l, 0.5)


def test_golden_reward_and_judge_hand_values():
    rewards = oot.golden_rewards([85, 85, 85, 10, 7], ["85", "80", "", "999", "1a"], -100.0)
    np.testing.assert_array_equal(rewards, [0.0, -5.0, -100.0, -100.0, -100.0])  # 999: −989 clipped
    p = oot.judge_probability([0.0, -2.0, -100.0], [-2.0, 0.0, 0.0], 2.0)
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0)), 1 / (1 + np.exp(50.0))],
                               rtol=1e-15)
    np.testing.assert_allclose(p + oot.judge_probability([-2.0, 0.0, 0.0], [0.0, -2.0, -100.0], 2.0), 1.0,
                               rtol=0, atol=1e-15)
    mean, se = oot.mean_and_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and se == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2.0, rel=1e-15)
    with pytest.raises(ValueError, match="invalid_reward"):
        oot.golden_rewards([1], ["1"], 0.0)
    with pytest.raises(ValueError, match="completions"):
        oot.golden_rewards([1, 2], ["1"], -1.0)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="eval_prompts"):
        oot.OnlineOfflineConfig(n_test=10, eval_prompts=20)
    with pytest.raises(ValueError, match="data_checkpoint"):
        oot.OnlineOfflineConfig(mode="offline", data_source="checkpoint")
    with pytest.raises(ValueError, match="data_temperature"):
        oot.OnlineOfflineConfig(data_temperature=0.0)
    with pytest.raises(ValueError, match="kind"):
        oot.OnlineOfflineConfig(kind="nonsense")
    assert oot.OnlineOfflineConfig(steps=10, batch_size=4).dataset_size == 40


# ----------------------------------------------------------------------------- enumerable oracles
@pytest.fixture(scope="module")
def enumerable():
    """X = 2 prompts, responses = all 9 strings of length 2 over "abc"; two different nano LMs."""
    tokenizer = build_char_tokenizer()
    rewards = np.array([[0, -1, -2, -1, -2, -3, -2, -3, -4], [-4, -3, -2, -3, -2, -1, -2, -1, 0]], dtype=float)
    task = enumerable_task(["p:", "q:"], "abc", 2, rewards=rewards)
    policy = build_lm("nano", len(tokenizer), seed=0, dtype="float64").eval()
    reference = build_lm("nano", len(tokenizer), seed=4, dtype="float64").eval()
    ids, mask = task.prompt_batch(tokenizer)
    allowed = task.response_token_ids(tokenizer)
    with torch.no_grad():
        responses = task.all_response_ids(tokenizer)
        log_pi = enumerate_logprobs(policy, ids, mask, responses, allowed_tokens=allowed).numpy()
        log_ref = enumerate_logprobs(reference, ids, mask, responses, allowed_tokens=allowed).numpy()
    return tokenizer, task, policy, reference, ids, mask, allowed, log_pi, log_ref


def test_kl_estimator_matches_exact_kl_by_enumeration(enumerable):
    tokenizer, task, policy, reference, ids, mask, allowed, log_pi, log_ref = enumerable
    pi = np.exp(log_pi)
    ratio = log_pi - log_ref
    exact_kl = (pi * ratio).sum(-1)  # [X]
    exact_var = (pi * (ratio - exact_kl[:, None]) ** 2).sum(-1)
    assert np.all(exact_kl > 1e-3)  # the two models differ: the test can fail
    n = 2000
    for x in range(task.n_contexts):
        drawn = sample(policy, ids[x:x + 1], mask[x:x + 1], task.length, n=n, stop_at_eos=False,
                       generator=torch.Generator().manual_seed(100 + x), allowed_tokens=allowed)
        with torch.no_grad():
            lp = sequence_logprobs(policy, drawn.prompt_ids, drawn.prompt_mask, drawn.tokens, drawn.mask,
                                   allowed_tokens=allowed)
            lr = sequence_logprobs(reference, drawn.prompt_ids, drawn.prompt_mask, drawn.tokens, drawn.mask,
                                   allowed_tokens=allowed)
        mean, se = oot.kl_estimate(lp, lr)
        exact_se = np.sqrt(exact_var[x] / n)
        assert abs(mean - exact_kl[x]) < 4.0 * exact_se, (x, mean, exact_kl[x], exact_se)
        # the reported s.e. estimates the exact one: relative error of a sample std at n = 2000 is
        # ≈ 1/√(2n) ≈ 1.6 % (times the kurtosis factor); 15 % is far outside chance
        assert se == pytest.approx(exact_se, rel=0.15)


def test_sampled_pairs_are_on_policy_and_labels_follow_the_judge(enumerable):
    tokenizer, task, policy, reference, ids, mask, allowed, log_pi, log_ref = enumerable
    pairs_per_prompt = 3000
    index = torch.arange(task.n_contexts).repeat_interleave(pairs_per_prompt)

    def reward_fn(tokens, token_mask):
        return task.rewards[np.repeat(index.numpy(), 2), task.indices_of(tokens, tokenizer)]

    pairs, rewards, first_wins = oot.sample_labelled_pairs(
        policy, ids[index], mask[index], task.length, reward_fn=reward_fn, label_temperature=1.5,
        generator=torch.Generator().manual_seed(7), label_generator=torch.Generator().manual_seed(8),
        stop_at_eos=False, allowed_tokens=allowed)
    chosen = task.indices_of(pairs.chosen, tokenizer)
    rejected = task.indices_of(pairs.rejected, tokenizer)
    # the two samples of each pair are i.i.d. π_θ: pool them per prompt and compare with π_θ
    counts = np.zeros((task.n_contexts, task.n_responses))
    np.add.at(counts, (index.numpy(), chosen), 1)
    np.add.at(counts, (index.numpy(), rejected), 1)
    expected = 2 * pairs_per_prompt * np.exp(log_pi)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = task.n_contexts * (task.n_responses - 1)
    assert stats.chi2.sf(chi2, dof) > 1e-4, (chi2, dof)
    # labels: the winner is the first sample with probability σ((r1 − r2)/T)
    p = oot.judge_probability(rewards[:, 0], rewards[:, 1], 1.5)
    assert abs(first_wins.sum() - p.sum()) < 4.0 * np.sqrt((p * (1 - p)).sum())
    # winner/loser are the drawn (first, second) samples, ordered by the label
    winner_reward = task.rewards[index.numpy(), chosen]
    np.testing.assert_array_equal(winner_reward, np.where(first_wins, rewards[:, 0], rewards[:, 1]))
    assert torch.equal(pairs.chosen_length, torch.full((len(index),), 2))


# ----------------------------------------------------------------------------- trainer data
def _tiny(**changes):
    return oot.OnlineOfflineConfig(**{**TINY, **changes})


def test_online_step_pairs_are_drawn_from_the_current_policy():
    state = oot.prepare(_tiny(mode="online"), seed=0)
    for _ in range(2):
        oot.train_step(state)
    model_before = build_lm("nano", len(state.tokenizer), 0)
    model_before.load_state_dict(state.model.state_dict())
    gens = {name: generator_state(getattr(state, name)) for name in
            ("data_generator", "sample_generator", "label_generator")}
    _, pairs = oot.train_step(state)
    data, sampler, labels = (torch.Generator() for _ in range(3))
    restore_generator(data, gens["data_generator"])
    restore_generator(sampler, gens["sample_generator"])
    restore_generator(labels, gens["label_generator"])
    index = torch.randint(state.config.n_train, (state.config.batch_size,), generator=data)
    ids, mask = state.prompts("train", index)
    sums = np.repeat(state.sums_train[index.numpy()], 2)
    again, _, _ = oot.sample_labelled_pairs(
        model_before.eval(), ids, mask, state.task.max_new_tokens, label_temperature=state.config.label_temperature,
        generator=sampler, label_generator=labels, reward_fn=lambda t, m: state.rewards(sums, t, m))
    assert torch.equal(pairs.prompt_index, index)
    for name in ("chosen", "chosen_length", "rejected", "rejected_length"):
        assert torch.equal(getattr(pairs, name), getattr(again, name)), name
    assert state.generated[-1] is pairs and len(state.generated) == 3


def _rows(pairs: oot.PairSet) -> list:
    return sorted(zip(pairs.prompt_index.tolist(), pairs.chosen.tolist(), pairs.chosen_length.tolist(),
                      pairs.rejected.tolist(), pairs.rejected_length.tolist()))


def test_offline_dataset_is_fixed_and_each_epoch_uses_every_pair_once():
    config = _tiny(mode="offline", offline_pairs=16, steps=6, batch_size=8)  # 3 epochs of 2 batches
    state = oot.prepare(config, seed=0)
    oot.build_offline_dataset(state, seed=0)
    dataset = dataclasses.replace(state.dataset)
    frozen = {f.name: getattr(dataset, f.name).clone() for f in dataclasses.fields(dataset)}
    assert state.dataset.size == 16
    used = [oot.train_step(state)[1] for _ in range(6)]
    width = state.dataset.chosen.shape[1]

    def widen(p):
        pad = state.tokenizer.pad_token_id
        return oot.PairSet.concat([p], pad) if p.chosen.shape[1] == width else p

    orders = []
    for epoch in range(3):
        epoch_pairs = oot.PairSet.concat([widen(used[2 * epoch]), widen(used[2 * epoch + 1])],
                                         state.tokenizer.pad_token_id)
        assert _rows(epoch_pairs) == _rows(state.dataset), epoch
        orders.append(epoch_pairs.prompt_index.tolist())
    assert orders[0] != orders[1]  # reshuffled each epoch (16! orders: equal by chance ≈ 5e-14)
    for name, value in frozen.items():
        assert torch.equal(getattr(state.dataset, name), value), name


def test_offline_on_online_samples_in_order_reproduces_the_online_run_bitwise():
    online = oot.run_online(_tiny(mode="online"), seed=0, steps=4)
    config = _tiny(mode="offline", data_source="online_samples", data_order="original", data_policy_steps=4,
                   steps=4, offline_pairs=32)
    state = oot.prepare(config, seed=0)
    oot.build_offline_dataset(state, seed=0)
    expected = oot.PairSet.concat(online.generated, state.tokenizer.pad_token_id)
    for f in dataclasses.fields(expected):
        assert torch.equal(getattr(state.dataset, f.name), getattr(expected, f.name)), f.name
    for _ in range(4):
        oot.train_step(state)
    for (name, a), b in zip(online.model.state_dict().items(), state.model.state_dict().values()):
        assert torch.equal(a, b), name
    # shuffled, the same pairs give another trajectory (the paper's "order matters" control)
    shuffled = oot.prepare(dataclasses.replace(config, data_order="shuffled"), seed=0)
    oot.build_offline_dataset(shuffled, seed=0)
    assert _rows(shuffled.dataset) == _rows(state.dataset)
    for _ in range(4):
        oot.train_step(shuffled)
    assert any(not torch.equal(a, b) for a, b in zip(online.model.parameters(), shuffled.model.parameters()))


def test_data_from_a_checkpoint_equals_data_from_the_same_online_run_in_process(tmp_path):
    from fixpoint_rl.deep.checkpoint import Checkpointer
    from fixpoint_rl.deep.runtime import run_trainer

    run_trainer("online_offline", _tiny(mode="online"), seed=0, out_dir=tmp_path / "online", progress=False,
                device="cpu")
    path = str(Checkpointer(tmp_path / "online" / "checkpoints", 1).latest_path())

    def dataset(**changes):
        state = oot.prepare(_tiny(mode="offline", **changes), seed=0)
        oot.build_offline_dataset(state, seed=0)
        return state.dataset

    for file_source, process_source in ((dict(data_source="checkpoint", data_checkpoint=path),
                                         dict(data_source="online_policy", data_policy_steps=6)),
                                        (dict(data_source="online_samples", data_checkpoint=path),
                                         dict(data_source="online_samples"))):
        from_file, in_process = dataset(**file_source), dataset(**process_source)
        for f in dataclasses.fields(from_file):
            assert torch.equal(getattr(from_file, f.name), getattr(in_process, f.name)), (file_source, f.name)
    # the quality ablation's data differ from π_SFT's (same generators, another behaviour policy)
    assert _rows(dataset(data_source="checkpoint", data_checkpoint=path)) != _rows(dataset())
    with pytest.raises(ValueError, match="data_checkpoint"):
        dataset(data_source="checkpoint", data_checkpoint=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_resume_is_bitwise(mode, tmp_path):
    assert_resume_bitwise("online_offline", _tiny(mode=mode), tmp_path, seed=0, checkpoint_every=2,
                          stop_after_log_calls=2)
