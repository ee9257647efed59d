"""Small language models: tokenizer, models, sampling, log-probs, geometric mixture, enumeration.

Oracles: the tokenizer's round trip; a brute-force sum of log_softmax computed prefix by prefix
without cache or padding; the numpy geometric_mixture_log of ``tabular.core.mirror``; enumerated
probabilities (sum to 1, chain rule) and a χ² goodness-of-fit test of sampled frequencies against
them. Every model is a ``nano`` Llama (0.14M parameters); ``transformers`` is imported once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from fixpoint_rl.deep.llm.models import LM_PRESETS, LMConfig, build_lm, count_parameters
from fixpoint_rl.deep.llm.sampling import (
    completion_logits,
    enumerate_logprobs,
    make_generator,
    sample,
    sample_geometric_mixture,
    sequence_logprobs,
)
from fixpoint_rl.deep.llm.tasks import enumerable_task
from fixpoint_rl.deep.llm.tokenizer import (
    DEFAULT_ALPHABET,
    build_char_tokenizer,
    decode_completions,
    encode_prompts,
)
from fixpoint_rl.tabular.core.mirror import geometric_mixture_log

torch.set_num_threads(1)

# χ² goodness-of-fit level: with fixed seeds the test is deterministic; 1e-3 keeps a correct
# sampler far from the rejection region while a wrong distribution (e.g. tempered vs untempered,
# or a shifted position) is rejected with p-values below 1e-10 at these sample sizes.
CHI2_LEVEL = 1e-3
# float64 models: a KV-cache step and a full forward pass differ only by summation order,
# ~1e-15 per operation over a few hundred operations.
F64_TOL = 1e-12
# float32 models: same, with float32 rounding (~1e-7 relative) on log-probs of magnitude ~5.
F32_TOL = 2e-5


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_lm("nano", len(tokenizer), seed=0)


@pytest.fixture(scope="module")
def model64(tokenizer):
    return build_lm("nano", len(tokenizer), seed=1, dtype="float64")


@pytest.fixture(scope="module")
def reference64(tokenizer):
    return build_lm("nano", len(tokenizer), seed=2, dtype="float64")


def _prompts(tokenizer):
    # different lengths -> left padding in the batch
    return encode_prompts(tokenizer, ["12+3=", "7=", "abc|x", "C:aa="])


# ------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------
@given(st.lists(st.text(alphabet=DEFAULT_ALPHABET, min_size=1, max_size=30), min_size=1, max_size=6))
def test_tokenizer_round_trip(tokenizer, texts):
    ids, mask = encode_prompts(tokenizer, texts)
    assert ids.shape == mask.shape and ids.shape[1] == max(len(t) for t in texts)
    # one token per character, padding on the left
    assert mask.sum(1).tolist() == [len(t) for t in texts]
    assert torch.all(mask[:, 1:] >= mask[:, :-1])
    assert tokenizer.batch_decode(ids, skip_special_tokens=True) == texts
    assert decode_completions(tokenizer, ids.flip(1), mask.flip(1)) == [t[::-1] for t in texts]


def test_tokenizer_special_tokens_and_validation(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.padding_side == "left"
    assert len(tokenizer) == 3 + len(DEFAULT_ALPHABET)
    ids, _ = encode_prompts(tokenizer, ["a b"], bos=True)
    assert ids[0].tolist() == [1] + tokenizer.convert_tokens_to_ids(["a", " ", "b"])
    small = build_char_tokenizer("ab")
    assert len(small) == 5 and small.convert_tokens_to_ids(["a", "b"]) == [3, 4]
    with pytest.raises(ValueError, match="prompts"):
        encode_prompts(small, ["abc"])
    with pytest.raises(ValueError, match="prompts"):
        encode_prompts(small, "ab")
    with pytest.raises(ValueError, match="alphabet"):
        build_char_tokenizer("aba")
    with pytest.raises(ValueError, match="alphabet"):
        build_char_tokenizer("")


# ------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------
def test_build_lm_is_seeded_and_leaves_global_rng(tokenizer):
    before = torch.get_rng_state()
    a = build_lm("nano", len(tokenizer), seed=5)
    b = build_lm("nano", len(tokenizer), seed=5)
    c = build_lm("nano", len(tokenizer), seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    V = len(tokenizer)
    # Llama parameter count, by hand: embeddings + untied head (2·V·d), per layer 4·d² attention,
    # 3·d·F SwiGLU, 2·d RMSNorm weights; final norm d.
    d, F, L = 64, 256, 2
    assert count_parameters(a) == 2 * V * d + L * (4 * d * d + 3 * d * F + 2 * d) + d
    assert a.config.eos_token_id == tokenizer.eos_token_id and not a.training


def test_presets_and_model_validation(tokenizer):
    assert set(LM_PRESETS) == {"nano", "micro", "small", "base", "large"}
    sizes = {name: (c.hidden_size, c.num_layers) for name, c in LM_PRESETS.items()}
    assert sizes["nano"] == (64, 2) and sizes["micro"] == (128, 2) and sizes["small"] == (256, 4)
    base = LM_PRESETS["base"]
    # ≈ 85M non-embedding parameters for the GPU base preset
    per_layer = 4 * base.hidden_size**2 + 3 * base.hidden_size * base.intermediate_size
    assert 80e6 < base.num_layers * per_layer < 90e6
    with pytest.raises(ValueError, match="preset"):
        build_lm("tiny", 10, 0)
    with pytest.raises(ValueError, match="vocab_size"):
        build_lm("nano", 1, 0)
    with pytest.raises(ValueError, match="seed"):
        build_lm("nano", 10, -1)
    with pytest.raises(ValueError, match="dtype"):
        build_lm("nano", 10, 0, dtype="int8")
    with pytest.raises(ValueError, match="eos_token_id"):
        build_lm("nano", 10, 0, eos_token_id=10)
    with pytest.raises(ValueError, match="hidden_size"):
        LMConfig(hidden_size=66, num_layers=1, num_heads=4, intermediate_size=8)
    with pytest.raises(ValueError, match="num_layers"):
        LMConfig(hidden_size=64, num_layers=0, num_heads=4, intermediate_size=8)


# ------------------------------------------------------------------------------------------
# Log-probabilities
# ------------------------------------------------------------------------------------------
def _brute_force_logprobs(model, prompt_ids, prompt_mask, completion, completion_mask):
    """Σ_t log_softmax(model(prefix_t))[y_t], prefix by prefix, unpadded, no KV cache."""
    totals, per_token = [], torch.zeros(completion.shape, dtype=torch.float64)
    with torch.no_grad():
        for b in range(prompt_ids.shape[0]):
            prompt = prompt_ids[b][prompt_mask[b] == 1]
            total = 0.0
            for t in range(completion.shape[1]):
                if completion_mask[b, t] == 0:
                    continue
                prefix = torch.cat([prompt, completion[b, :t]])[None]
                logits = model(input_ids=prefix).logits[0, -1]
                value = float(torch.log_softmax(logits.double(), -1)[completion[b, t]])
                per_token[b, t] = value
                total += value
            totals.append(total)
    return torch.tensor(totals, dtype=torch.float64), per_token


@pytest.mark.parametrize("dtype_fixture, tol", [("model", F32_TOL), ("model64", F64_TOL)])
def test_sequence_logprobs_equal_brute_force(request, tokenizer, dtype_fixture, tol):
    model = request.getfixturevalue(dtype_fixture)
    ids, mask = _prompts(tokenizer)
    gen = torch.Generator().manual_seed(3)
    completion = torch.randint(3, len(tokenizer), (ids.shape[0], 5), generator=gen)
    completion_mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4, [1] * 4 + [0]])
    expected, expected_tokens = _brute_force_logprobs(model, ids, mask, completion, completion_mask)
    with torch.no_grad():
        got = sequence_logprobs(model, ids, mask, completion, completion_mask)
        got_tokens = sequence_logprobs(model, ids, mask, completion, completion_mask, per_token=True)
    assert got.shape == (4,) and got_tokens.shape == (4, 5)
    assert torch.allclose(got.double(), expected, atol=tol, rtol=0)
    assert torch.allclose(got_tokens.double(), expected_tokens, atol=tol, rtol=0)
    # log-probs are differentiable (they are the training signal of the RL objectives)
    sequence_logprobs(model, ids, mask, completion, completion_mask).sum().backward()
    assert model.lm_head.weight.grad is not None
    model.zero_grad(set_to_none=True)


@given(
    st.lists(
        st.tuples(st.text(alphabet="0123456789+=ab", min_size=1, max_size=7), st.integers(1, 5)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 2**31 - 1),
)
def test_batched_logprobs_equal_row_by_row(model64, tokenizer, rows, seed):
    # Any mix of prompt lengths (left padding) and completion lengths (right padding) in one batch
    # gives each row exactly its unpadded log-probs (float64: 1e-12, summation order only).
    prompts, lengths = [r[0] for r in rows], [r[1] for r in rows]
    ids, mask = encode_prompts(tokenizer, prompts)
    T = max(lengths)
    completion = torch.randint(3, len(tokenizer), (len(rows), T), generator=torch.Generator().manual_seed(seed))
    completion_mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        batched = sequence_logprobs(model64, ids, mask, completion, completion_mask, per_token=True)
        for i, (prompt, length) in enumerate(rows):
            alone_ids, alone_mask = encode_prompts(tokenizer, [prompt])
            alone = sequence_logprobs(model64, alone_ids, alone_mask, completion[i : i + 1, :length], completion_mask[i : i + 1, :length], per_token=True)
            assert torch.allclose(batched[i, :length], alone[0], atol=F64_TOL, rtol=0)
            assert torch.all(batched[i, length:] == 0)


def test_logprob_validation(model, tokenizer):
    ids, mask = _prompts(tokenizer)
    completion = torch.full((4, 2), 5)
    ones = torch.ones_like(completion)
    with pytest.raises(ValueError, match="completion_ids"):
        sequence_logprobs(model, ids, mask, completion[:2], ones[:2])
    with pytest.raises(ValueError, match="completion_mask"):
        sequence_logprobs(model, ids, mask, completion, torch.tensor([[0, 1]] * 4))
    with pytest.raises(ValueError, match="prompt_mask"):
        sequence_logprobs(model, ids, mask.flip(1), completion, ones)
    with pytest.raises(ValueError, match="prompt_ids"):
        sequence_logprobs(model, ids + 1000, mask, completion, ones)
    with pytest.raises(ValueError, match="temperature"):
        sequence_logprobs(model, ids, mask, completion, ones, temperature=0.0)
    with pytest.raises(ValueError, match="allowed_tokens"):
        sequence_logprobs(model, ids, mask, completion, ones, allowed_tokens=[3, 4])


# ------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype_fixture, tol", [("model", F32_TOL), ("model64", F64_TOL)])
def test_sampler_logprobs_equal_sequence_logprobs(request, tokenizer, dtype_fixture, tol):
    model = request.getfixturevalue(dtype_fixture)
    ids, mask = _prompts(tokenizer)
    out = sample(model, ids, mask, 12, n=3, stop_at_eos=True, generator=7)
    assert out.tokens.shape[0] == 12 and out.prompt_ids.shape == (12, ids.shape[1])
    assert torch.equal(out.prompt_ids[3:6], ids[1:2].expand(3, -1))
    with torch.no_grad():
        scored = sequence_logprobs(model, out.prompt_ids, out.prompt_mask, out.tokens, out.mask, per_token=True)
    assert torch.allclose(scored, out.logprobs, atol=tol, rtol=0)
    assert torch.all(out.logprobs[out.mask == 0] == 0)
    # temperature: the sampler reports the tempered distribution's log-probs
    hot = sample(model, ids, mask, 6, temperature=1.7, stop_at_eos=False, generator=8)
    with torch.no_grad():
        scored = sequence_logprobs(model, hot.prompt_ids, hot.prompt_mask, hot.tokens, hot.mask, per_token=True, temperature=1.7)
    assert torch.allclose(scored, hot.logprobs, atol=tol, rtol=0)
    # results are ordinary tensors usable in autograd
    sequence_logprobs(model, out.prompt_ids, out.prompt_mask, out.tokens, out.mask).sum().backward()
    model.zero_grad(set_to_none=True)


def test_sampler_is_reproducible_and_leaves_global_rng(model, tokenizer):
    ids, mask = _prompts(tokenizer)
    before = torch.get_rng_state()
    a = sample(model, ids, mask, 10, n=2, generator=make_generator(11))
    b = sample(model, ids, mask, 10, n=2, generator=11)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    gen = make_generator(11)
    first = sample(model, ids, mask, 10, n=2, generator=gen)
    second = sample(model, ids, mask, 10, n=2, generator=gen)  # the generator has advanced
    assert torch.equal(first.tokens, a.tokens) and not torch.equal(second.tokens, a.tokens)
    # a left-padded prompt samples exactly as the unpadded one (positions follow the mask)
    alone = sample(model, *encode_prompts(tokenizer, ["7="]), 10, n=4, generator=5, stop_at_eos=False)
    batch = sample(model, ids, mask, 10, n=4, generator=5, stop_at_eos=False)
    assert torch.allclose(alone.logprobs[:, :], sequence_logprobs(model, alone.prompt_ids, alone.prompt_mask, alone.tokens, alone.mask, per_token=True).detach(), atol=F32_TOL)
    padded = sequence_logprobs(model, batch.prompt_ids[4:8], batch.prompt_mask[4:8], alone.tokens, alone.mask, per_token=True)
    assert torch.allclose(padded.detach(), alone.logprobs, atol=F32_TOL, rtol=0)


def test_eos_mode_stops_at_first_step_and_fixed_mode_does_not(model, tokenizer):
    eos, a = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("a")
    ids, mask = encode_prompts(tokenizer, ["12+3="])
    allowed = [eos, a]
    out = sample(model, ids, mask, 6, n=400, generator=1, allowed_tokens=allowed)
    first_is_eos = out.tokens[:, 0] == eos
    assert first_is_eos.any() and (~first_is_eos).any()
    # rows whose first token is EOS end there: length 1, then padding with mask 0 and log-prob 0
    assert torch.all(out.lengths[first_is_eos] == 1)
    assert torch.all(out.tokens[first_is_eos, 1:] == tokenizer.pad_token_id)
    # every row ends at its first EOS (included), or runs to max_new_tokens
    for row, length in zip(out.tokens.tolist(), out.lengths.tolist()):
        assert eos not in row[: length - 1] and (row[length - 1] == eos or length == 6)
    # the fraction of length-1 rows matches π(EOS | prompt) restricted to {EOS, a}
    with torch.no_grad():
        p_eos = float(torch.softmax(completion_logits(model, ids, mask, torch.tensor([[eos]]), torch.ones(1, 1, dtype=torch.long))[0, 0, allowed], -1)[0])
    k = int(first_is_eos.sum())
    assert stats.binomtest(k, 400, p_eos).pvalue > CHI2_LEVEL
    only_eos = sample(model, ids, mask, 6, n=3, generator=1, allowed_tokens=[eos])
    assert only_eos.tokens.shape == (3, 1) and only_eos.mask.tolist() == [[1]] * 3
    fixed = sample(model, ids, mask, 6, n=400, generator=1, allowed_tokens=allowed, stop_at_eos=False)
    assert fixed.tokens.shape == (400, 6) and bool(fixed.mask.all())
    assert bool((fixed.tokens[:, :-1] == eos).any())  # EOS is an ordinary token in fixed mode
    # The pitfall our EOS mode avoids: HF generate(min_new_tokens=N) suppresses EOS for N steps.
    with torch.inference_mode():
        hf = model.generate(
            input_ids=ids.expand(64, -1), attention_mask=mask.expand(64, -1), do_sample=True,
            max_new_tokens=6, min_new_tokens=3, suppress_tokens=None,
        )
    assert not bool((hf[:, ids.shape[1] : ids.shape[1] + 3] == eos).any())


def test_greedy_is_argmax(model, tokenizer):
    ids, mask = _prompts(tokenizer)
    out = sample(model, ids, mask, 5, temperature=0.0, stop_at_eos=False, generator=0)
    with torch.no_grad():
        logits = completion_logits(model, ids, mask, out.tokens, out.mask)
    assert torch.equal(logits.argmax(-1), out.tokens)


def test_sampler_validation(model, tokenizer):
    ids, mask = _prompts(tokenizer)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(model, ids, mask, 0, generator=0)
    with pytest.raises(ValueError, match="prompt_mask"):
        sample(model, ids, mask.flip(1), 3, generator=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, ids, mask, 3, temperature=-1.0, generator=0)
    with pytest.raises(ValueError, match="generator"):
        sample(model, ids, mask, 3, generator="seed")
    with pytest.raises(ValueError, match="n"):
        sample(model, ids, mask, 3, n=0, generator=0)
    with pytest.raises(ValueError, match="allowed_tokens"):
        sample(model, ids, mask, 3, generator=0, allowed_tokens=[3, 3])
    with pytest.raises(ValueError, match="prompt_ids"):
        sample(model, ids.float(), mask, 3, generator=0)
    with pytest.raises(ValueError, match="beta"):
        sample_geometric_mixture(model, model, 1.5, ids, mask, 3, generator=0)


# ------------------------------------------------------------------------------------------
# Enumerable responses: exact probabilities and χ² tests of the samplers
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_task():
    return enumerable_task(["x0:", "x1:"], "abc", 2, name="test")  # K = 3, L = 2, N = 9


def _chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    probs = probs / probs.sum()  # float32 probabilities sum to 1 only within ~1e-7
    return float(stats.chisquare(counts, probs * counts.sum()).pvalue)


@pytest.mark.parametrize("dtype_fixture, tol", [("model", 1e-6), ("model64", 1e-12)])
def test_enumerated_probabilities_sum_to_one(request, tokenizer, small_task, dtype_fixture, tol):
    model = request.getfixturevalue(dtype_fixture)
    task = enumerable_task(["x0:", "longer prompt:"], "abcd", 3)  # N = 64
    ids, mask = task.prompt_batch(tokenizer)
    allowed = task.response_token_ids(tokenizer)
    responses = task.all_response_ids(tokenizer)
    with torch.no_grad():
        logp = enumerate_logprobs(model, ids, mask, responses, allowed_tokens=allowed)
    assert logp.shape == (2, 64)
    # tolerance: float32 sums of 64 probabilities each rounded at ~1e-7 relative; float64 ~1e-16
    assert torch.allclose(logp.exp().sum(-1).double(), torch.ones(2, dtype=torch.float64), atol=tol, rtol=0)
    # chain rule by hand: log π(y) = Σ_t log softmax over allowed tokens of the prefix's logits
    with torch.no_grad():
        logits = completion_logits(model, ids[1:].expand(64, -1), mask[1:].expand(64, -1), responses, torch.ones_like(responses))
    per_token = torch.log_softmax(logits[..., allowed].double(), -1)
    digits = torch.from_numpy(task.response_digits())
    by_hand = per_token.gather(-1, digits[..., None]).squeeze(-1).sum(-1)
    assert torch.allclose(logp[1].double(), by_hand, atol=100 * tol, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sampler_frequencies_match_enumerated_policy(model, tokenizer, small_task, temperature):
    ids, mask = small_task.prompt_batch(tokenizer)
    allowed = small_task.response_token_ids(tokenizer)
    with torch.no_grad():
        probs = enumerate_logprobs(
            model, ids, mask, small_task.all_response_ids(tokenizer), allowed_tokens=allowed, temperature=temperature
        ).double().exp().numpy()
    n = 3000
    out = sample(model, ids, mask, 2, n=n, temperature=temperature, stop_at_eos=False, generator=2024, allowed_tokens=allowed)
    index = small_task.indices_of(out.tokens, tokenizer).reshape(2, n)
    for x in range(2):
        counts = np.bincount(index[x], minlength=9)
        assert _chi2_pvalue(counts, probs[x]) > CHI2_LEVEL
    # the test has power: the untempered/other-prompt distribution is rejected when it differs
    wrong = probs[1] if temperature == 1.0 else probs[0] ** (1 / temperature)
    wrong = wrong / wrong.sum()
    assert _chi2_pvalue(np.bincount(index[0], minlength=9), wrong) < CHI2_LEVEL


# ------------------------------------------------------------------------------------------
# Geometric mixture (NLHF App. F.1)
# ------------------------------------------------------------------------------------------
def test_mixture_logits_equal_tabular_formula(model64, reference64, tokenizer):
    ids, mask = _prompts(tokenizer)
    beta = 0.3
    out = sample_geometric_mixture(model64, reference64, beta, ids, mask, 8, n=2, generator=9)
    with torch.no_grad():
        log_pi = torch.log_softmax(completion_logits(model64, out.prompt_ids, out.prompt_mask, out.tokens, out.mask), -1)
        log_mu = torch.log_softmax(completion_logits(reference64, out.prompt_ids, out.prompt_mask, out.tokens, out.mask), -1)
    # the tabular formula, on numpy arrays
    mixture = geometric_mixture_log(log_pi.numpy(), log_mu.numpy(), beta)
    chosen = np.take_along_axis(mixture, out.tokens.numpy()[..., None], -1)[..., 0]
    expected = np.where(out.mask.numpy() == 1, chosen, 0.0)
    np.testing.assert_allclose(out.logprobs.numpy(), expected, atol=F64_TOL, rtol=0)
    # ... equals softmax((1 − β)·logits_π + β·logits_μ) of the raw logits (the normaliser cancels)
    with torch.no_grad():
        raw = (1 - beta) * completion_logits(model64, out.prompt_ids, out.prompt_mask, out.tokens, out.mask) + beta * completion_logits(
            reference64, out.prompt_ids, out.prompt_mask, out.tokens, out.mask
        )
    np.testing.assert_allclose(torch.log_softmax(raw, -1).numpy(), mixture, atol=F64_TOL, rtol=0)


def test_mixture_endpoints_and_frequencies(model64, reference64, tokenizer, small_task):
    ids, mask = _prompts(tokenizer)
    pure = sample(model64, ids, mask, 6, generator=4)
    for beta, same in ((0.0, model64), (1.0, reference64)):
        mixed = sample_geometric_mixture(model64, reference64, beta, ids, mask, 6, generator=4)
        alone = sample(same, ids, mask, 6, generator=4)
        assert torch.equal(mixed.tokens, alone.tokens)
        assert torch.allclose(mixed.logprobs, alone.logprobs, atol=F64_TOL, rtol=0)
    assert pure.tokens.shape[0] == ids.shape[0]
    # χ² against the enumerated per-token mixture (product over the L tokens of the mixture)
    beta = 0.6
    ids, mask = small_task.prompt_batch(tokenizer)
    allowed = small_task.response_token_ids(tokenizer)
    responses = small_task.all_response_ids(tokenizer)
    with torch.no_grad():
        rows = [
            torch.log_softmax(completion_logits(m, ids[:1].expand(9, -1), mask[:1].expand(9, -1), responses, torch.ones_like(responses))[..., allowed], -1)
            for m in (model64, reference64)
        ]
    mixture = geometric_mixture_log(rows[0], rows[1], beta)
    digits = torch.from_numpy(small_task.response_digits())
    probs = mixture.gather(-1, digits[..., None]).squeeze(-1).sum(-1).exp().numpy()
    assert abs(probs.sum() - 1) < 1e-12
    n = 3000
    out = sample_geometric_mixture(
        model64, reference64, beta, ids[:1], mask[:1], 2, n=n, stop_at_eos=False, generator=77, allowed_tokens=allowed
    )
    counts = np.bincount(small_task.indices_of(out.tokens, tokenizer), minlength=9)
    assert _chi2_pvalue(counts, probs) > CHI2_LEVEL


def test_readme_llm_example_runs():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    snippet = next(b for b in blocks if "fixpoint_rl.deep.llm" in b)
    exec(compile(snippet, "README.md", "exec"), {})  # its own assert checks the log-probs


def test_lazy_exports_resolve_and_package_import_is_light():
    import subprocess
    import sys

    import fixpoint_rl.deep.llm as llm

    for name in llm.__all__:
        assert getattr(llm, name) is not None, name
    with pytest.raises(AttributeError):
        llm.no_such_name  # noqa: B018
    code = "import sys, fixpoint_rl.deep.llm\nassert 'transformers' not in sys.modules\n"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


@pytest.mark.slow
def test_gpu_presets_build_and_sample_on_cpu(tokenizer):
    # The GPU presets are ordinary configs: build them on CPU, check the size, take two steps.
    for name, low, high in (("base", 80e6, 90e6), ("large", 290e6, 320e6)):
        model = build_lm(name, len(tokenizer), seed=0)
        non_embedding = count_parameters(model) - 2 * len(tokenizer) * LM_PRESETS[name].hidden_size
        assert low < non_embedding < high, (name, non_embedding)
        ids, mask = encode_prompts(tokenizer, ["1+1="])
        out = sample(model, ids, mask, 2, stop_at_eos=False, generator=0)
        assert out.tokens.shape == (1, 2) and torch.isfinite(out.logprobs).all()
        del model
