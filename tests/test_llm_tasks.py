"""Generated language tasks, enumerable-response tasks from games, and the supervised warm start.

Oracles: the arithmetic itself (targets recomputed from the prompt text), the games' own
preference matrices and reference policies (tree games: response index = final-state index), a
bitwise comparison of an interrupted-and-resumed warm start with an uninterrupted one.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fixpoint_rl.deep.checkpoint import Checkpointer
from fixpoint_rl.deep.llm.models import build_lm
from fixpoint_rl.deep.llm.sampling import enumerate_logprobs, sequence_logprobs
from fixpoint_rl.deep.llm.sft import SFTConfig, evaluate_accuracy, supervised_warm_start, text_batch
from fixpoint_rl.deep.llm.tasks import (
    EnumerableTask,
    Example,
    addition,
    copy_task,
    dialogue_game_task,
    dialogue_text_game,
    enumerable_addition,
    enumerable_task,
    multi_operand_sum,
    preference_game_task,
    reverse_task,
)
from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer, encode_prompts
from fixpoint_rl.envs import dialogue, preference

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


# ------------------------------------------------------------------------------------------
# Text tasks
# ------------------------------------------------------------------------------------------
def test_addition_targets_split_and_seed():
    task = addition(2, n_train=300, n_test=50, seed=3)
    assert len(task.train) == 300 and len(task.test) == 50
    prompts = [e.prompt for e in task.train + task.test]
    assert len(set(prompts)) == 350  # distinct, so train and test are disjoint
    for e in task.train + task.test:
        a, b = e.prompt[:-1].split("+")
        assert e.prompt.endswith("=") and e.target == e.answer == str(int(a) + int(b))
        assert 0 <= int(a) < 100 and 0 <= int(b) < 100
        assert task.verify(e, e.target) and not task.verify(e, e.target + "0")
    assert task.max_new_tokens == 4  # up to 3 answer digits + EOS
    assert addition(2, n_train=300, n_test=50, seed=3).train == task.train
    assert addition(2, n_train=300, n_test=50, seed=4).train != task.train
    all_pairs = addition(1, n_train=90, n_test=10)
    assert len({e.prompt for e in all_pairs.train + all_pairs.test}) == 100
    np.testing.assert_array_equal(task.rewards(task.test[:2], [task.test[0].answer, "x"]), [1.0, 0.0])


def test_multi_operand_sum_scratchpad_and_verifier():
    task = multi_operand_sum(4, 2, n_train=100, n_test=20, seed=1)
    for e in task.train:
        operands = [int(x) for x in e.prompt[:-1].split("+")]
        assert len(operands) == 4 and e.answer == str(sum(operands))
        steps, final = e.target.split(">")
        running = operands[0]
        for step, x in zip(steps.split(","), operands[1:]):
            assert step == f"{running}+{x}={running + x}"
            running += x
        assert final == e.answer and task.verify(e, e.target)
    e = task.train[0]
    # only the final answer (after the last '>') is verified
    assert task.verify(e, "garbage>" + e.answer)
    assert not task.verify(e, e.target[:-1]) and not task.verify(e, e.answer + ">")
    assert task.extract_answer("no separator") == ""
    assert task.max_new_tokens == max(len(x.target) for x in task.train + task.test) + 1
    plain = multi_operand_sum(3, 1, scratchpad=False, n_train=50, n_test=10)
    assert all(x.target == x.answer for x in plain.train) and plain.verify(plain.train[0], plain.train[0].answer)


def test_copy_and_reverse():
    c, r = copy_task(5, n_train=40, n_test=10, seed=2), reverse_task(5, n_train=40, n_test=10, seed=2)
    for e in c.train:
        assert e.prompt == f"C:{e.target}=" and len(e.target) == 5
    for e in r.train:
        assert e.prompt == f"R:{e.target[::-1]}="
    assert set(c.alphabet) <= set("abcdefghC:=")


def test_task_validation():
    with pytest.raises(ValueError, match="n_digits"):
        addition(0)
    with pytest.raises(ValueError, match="n_train"):
        addition(1, n_train=95, n_test=10)
    with pytest.raises(ValueError, match="n_operands"):
        multi_operand_sum(1)
    with pytest.raises(ValueError, match="symbols"):
        copy_task(3, symbols="aa")
    with pytest.raises(ValueError, match="split"):
        addition(1, n_train=5, n_test=5).split("valid")
    with pytest.raises(ValueError, match="completions"):
        addition(1, n_train=5, n_test=5).rewards([Example("1+1=", "2", "2")], [])


# ------------------------------------------------------------------------------------------
# Enumerable tasks
# ------------------------------------------------------------------------------------------
def test_enumerable_responses_and_indices(tokenizer):
    task = enumerable_task(["p:"], "xyz", 3)
    responses = task.all_responses()
    assert len(responses) == task.n_responses == 27 and responses[0] == "xxx" and responses[5] == "xyz"
    assert [task.response_index(y) for y in responses] == list(range(27))
    ids = task.all_response_ids(tokenizer)
    assert ids.shape == (27, 3)
    assert tokenizer.batch_decode(ids) == responses
    np.testing.assert_array_equal(task.indices_of(ids, tokenizer), np.arange(27))
    with pytest.raises(ValueError, match="response"):
        task.response_index("xxw")
    with pytest.raises(ValueError, match="response_chars"):
        enumerable_task(["p"], "abcdefghij", 4)  # 10^4 > 4096
    with pytest.raises(ValueError, match="pref"):
        enumerable_task(["p"], "ab", 1, pref=np.full((1, 2, 2), 0.7))
    with pytest.raises(ValueError, match="ref"):
        enumerable_task(["p"], "ab", 1, ref=[[0.5, 0.6]])


def test_enumerable_addition_rewards():
    task = enumerable_addition(12, seed=1)
    assert task.rewards.shape == (12, 100) and np.all(task.rewards.sum(1) == 1)
    responses = task.all_responses()
    for prompt, row in zip(task.prompts, task.rewards):
        a, b = prompt[:-1].split("+")
        assert responses[int(np.argmax(row))] == f"{int(a) + int(b):02d}"


def test_preference_game_task_carries_the_game():
    game = preference.rock_paper_scissors()
    task = preference_game_task(game)
    assert task.n_responses == 3 and task.length == 1 and task.prompts == ("x0:",)
    np.testing.assert_array_equal(task.pref[0], game.pref)
    np.testing.assert_array_equal(task.ref[0], game.ref)
    contextual = preference.random_contextual_game(X=4, K=5, seed=0)
    task = preference_game_task(contextual)
    np.testing.assert_array_equal(task.pref, contextual.pref)
    np.testing.assert_array_equal(task.context_weights, contextual.context_weights)
    with pytest.raises(ValueError, match="game"):
        preference_game_task("dice")


def test_dialogue_game_task_matches_tree_game():
    game = dialogue.tree_game(num_contexts=2, horizon=3, num_actions=3, seed=4)
    task = dialogue_game_task(game)
    assert task.n_responses == 27 and task.length == 3 and task.n_contexts == 2
    for c in range(2):
        # tree layout: the final state reached by y is the base-A number of y (MTPO Remark 3.3)
        np.testing.assert_array_equal(task.pref[c], game.preference_matrix(c))
        for i, y in enumerate(itertools.product(range(3), repeat=3)):
            state, mu = c, 1.0
            for a in y:
                mu *= game.reference[state, a]
                nxt, _ = game.transitions(state, a)
                state = int(nxt[0])
            assert task.ref[c, i] == pytest.approx(mu, rel=1e-12)
            assert state - game.num_decision_states - game.final_starts[c] == i
    with pytest.raises(ValueError, match="deterministic"):
        dialogue_game_task(dialogue.education_dialogue())


def test_dialogue_text_game_transitions_and_transcripts():
    from scipy import stats

    game = dialogue.random_layered_game(num_contexts=2, horizon=3, states_per_layer=4, num_actions=3, branching=3, seed=1)
    text = dialogue_text_game(game)
    # χ² (level 1e-3, fixed seed) of drawn successor entries against the pair's probabilities
    state, action = 1, 2
    successors, probs = game.transitions(state, action)
    nxt, obs = text.step(np.full(6000, state), np.full(6000, action), rng=0)
    assert np.array_equal(nxt, successors[obs])
    counts = np.bincount(obs, minlength=successors.size)
    assert stats.chisquare(counts, probs * 6000).pvalue > 1e-3
    # a random play: the transcript determines the state at every turn
    rng = np.random.default_rng(3)
    for c in range(2):
        states, transcript = text.start([c]), text.prompt(c)
        for _ in range(game.horizon):
            actions = rng.integers(0, 3, size=1)
            states, obs = text.step(states, actions, rng)
            transcript += text.turn_text(actions, obs)[0]
            assert text.state_of(transcript) == states[0]
        assert game.layer_of(int(states[0])) == game.horizon
    # the game's own preference lookup (diagonal ½ up to the game's rounding of (1 + U − Uᵀ)/2)
    assert text.preference(states, states)[0] == pytest.approx(0.5, abs=1e-15)
    # deterministic tree: the transcript's final state is the enumerable task's response index
    tree = dialogue.tree_game(num_contexts=1, horizon=2, num_actions=3, seed=0)
    tree_text, task = dialogue_text_game(tree), dialogue_game_task(tree)
    for i, y in enumerate(task.all_responses()):
        final = tree_text.state_of("c0:" + "".join(a + "0" for a in y))
        assert final - tree.num_decision_states == i
    with pytest.raises(ValueError, match="transcript"):
        text.state_of("c0:a9")
    with pytest.raises(ValueError, match="actions"):
        text.step(np.array([0]), np.array([3]), 0)
    with pytest.raises(ValueError, match="action_chars"):
        dialogue_text_game(game, action_chars="ab")


def test_enumerable_game_task_probabilities_sum_to_one(tokenizer):
    task = dialogue_game_task(dialogue.tree_game(num_contexts=3, horizon=2, num_actions=4, seed=0))
    model = build_lm("nano", len(tokenizer), seed=3, dtype="float64")
    ids, mask = task.prompt_batch(tokenizer)
    with torch.no_grad():
        logp = enumerate_logprobs(model, ids, mask, task.all_response_ids(tokenizer), allowed_tokens=task.response_token_ids(tokenizer))
    assert isinstance(task, EnumerableTask) and logp.shape == (3, 16)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------
# Supervised warm start
# ------------------------------------------------------------------------------------------
def test_text_batch_scores_targets(tokenizer):
    examples = [Example("1+2=", "3", "3"), Example("10+20=", "30", "30")]
    ids, mask, completion, c_mask = text_batch(tokenizer, examples)
    assert completion.tolist()[1] == tokenizer.convert_tokens_to_ids(["3", "0"]) + [tokenizer.eos_token_id]
    assert c_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert completion[0, 2] == tokenizer.pad_token_id
    ref_ids, ref_mask = encode_prompts(tokenizer, ["1+2=", "10+20="])
    assert torch.equal(ids, ref_ids) and torch.equal(mask, ref_mask)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


class _Interrupt(Exception):
    pass


class _InterruptingLog:
    """Raises at a given step, after the warm start logged it (a crash between checkpoints)."""

    def __init__(self, at: int):
        self.at = at

    def log(self, step, **metrics):
        if step == self.at:
            raise _Interrupt


def test_warm_start_is_seeded_stoppable_and_resumes_bitwise(tokenizer, tmp_path):
    task = addition(1, n_train=60, n_test=12, seed=0)
    config = SFTConfig(steps=6, batch_size=8, eval_every=3, eval_examples=12, seed=5)
    straight = build_lm("nano", len(tokenizer), seed=0)
    result = supervised_warm_start(straight, tokenizer, task, config)
    assert result.steps == 6 and len(result.history) == 2 and not result.stopped_early
    assert result.accuracy == evaluate_accuracy(straight, tokenizer, task, max_examples=12)
    again = build_lm("nano", len(tokenizer), seed=0)
    assert supervised_warm_start(again, tokenizer, task, config) == result
    assert all(torch.equal(a, b) for a, b in zip(_params(straight), _params(again)))
    # interrupted after step 5's checkpoint... (checkpoint every 2 steps, crash at the step-3 log)
    interrupted = build_lm("nano", len(tokenizer), seed=0)
    checkpointer = Checkpointer(tmp_path / "ckpt", every_steps=2)
    with pytest.raises(_Interrupt):
        supervised_warm_start(interrupted, tokenizer, task, config, checkpointer=checkpointer, log=_InterruptingLog(3))
    resumed = build_lm("nano", len(tokenizer), seed=0)  # a fresh process would rebuild the model
    out = supervised_warm_start(resumed, tokenizer, task, config, checkpointer=Checkpointer(tmp_path / "ckpt", every_steps=2))
    assert out == result
    assert all(torch.equal(a, b) for a, b in zip(_params(straight), _params(resumed)))
    # stoppable: a target accuracy of 0 is reached at the first evaluation
    early = supervised_warm_start(
        build_lm("nano", len(tokenizer), seed=0), tokenizer, task, SFTConfig(steps=50, batch_size=8, eval_every=2, eval_examples=4, stop_at_accuracy=0.0)
    )
    assert early.stopped_early and early.steps == 2


def test_warm_start_lowers_the_loss(tokenizer):
    task = copy_task(2, symbols="abc", n_train=6, n_test=3, seed=0)
    model = build_lm("nano", len(tokenizer), seed=1)
    batch = text_batch(tokenizer, list(task.train))
    with torch.no_grad():
        before = -sequence_logprobs(model, *batch).mean()
    supervised_warm_start(model, tokenizer, task, SFTConfig(steps=40, batch_size=6, eval_every=40, eval_examples=3, lr=1e-2))
    with torch.no_grad():
        after = -sequence_logprobs(model, *batch).mean()
    assert after < 0.5 * before


def test_sft_config_validation(tokenizer):
    with pytest.raises(ValueError, match="steps"):
        SFTConfig(steps=0)
    with pytest.raises(ValueError, match="stop_at_accuracy"):
        SFTConfig(stop_at_accuracy=1.5)
    with pytest.raises(ValueError, match="lr"):
        SFTConfig(lr=0.0)
    with pytest.raises(ValueError, match="task"):
        supervised_warm_start(build_lm("nano", len(tokenizer), 0), tokenizer, enumerable_addition(2))
