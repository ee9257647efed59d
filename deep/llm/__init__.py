"""Small causal language models built from a ``transformers`` config, generated tasks with
verifiable answers, sampling with per-token log-probabilities, and the language-model versions of
the preference and verifiable-reward algorithms. The only package under ``fixpoint_rl`` that
imports ``transformers``.
"""
