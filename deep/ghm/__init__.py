"""Geometric horizon models by flow matching: TD-CFM, TD-CFM(C), TD²-CFM (Temporal Difference Flows).

Farebrother, Pirotta, Tirinzoni, Munos, Lazaric, Touati, "Temporal Difference Flows", ICML 2025,
arXiv 2503.09817. Modules:

* ``paths`` — affine probability paths (straight OT, curved sin/cos);
* ``vector_field`` — v_θ(x, t | s, a): FiLM MLP or U-Net-style MLP, sinusoidal time embedding;
* ``ode`` — fixed-step Euler / midpoint / RK4 to a per-sample t, divergences, CNF log-likelihood;
* ``losses`` — MC-CFM, TD-CFM, TD-CFM(C), TD²-CFM regression targets (Algorithm 1), EMA;
* ``train`` — ``fixpoint train tdflow`` (checkpointed, bitwise resume) and in-memory ``fit``;
* ``metrics`` — exact EMD, NLL per dimension, value MSE, mean error, model sampling;
* ``analytic`` — the exact fixed-point field on the closed-form problems;
* ``variance`` — per-sample gradient variance (Theorems 2–3);
* ``gpi`` — GHM policy evaluation and generalised policy improvement;
* ``dmc`` — DeepMind Control data generation (optional ``dmc`` extra, GPU-machine scale).

Problems with exact answers live in ``fixpoint_rl.envs.ghm_tasks`` (numpy); closed forms shared
with numpy in ``fixpoint_rl.tabular.core.successor``.
"""
