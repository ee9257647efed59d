"""Sampled multi-step distributional targets for batches of replayed windows (array API).

One formula for three callers: the tabular oracle ``fixpoint_rl.tabular.qlambda
.sampled_distributional_target`` (numpy), the deep C51 family (torch, batched, on any device) and
the tests that tie both to the Numba kernel of ``fixpoint_rl.tabular._kernels.qlambda``.

Paper: Tang, Rowland, Munos, Ávila Pires, Dabney, "Off-policy Distributional Q(λ): Distributional
RL without Importance Sampling" (AISTATS 2026), the sample-based Q(λ)-C51 target; trace table as
in Munos, Stepleton, Harutyunyan, Bellemare (2016, arXiv:1606.02647, Table 1) and Harutyunyan,
Bellemare, Stepleton, Munos (2016, arXiv:1602.04951) for Q(λ).

Window layout (B windows of length n; t = 0..n−1):
  x_0, a_0 (the pair being updated), r_t, then x_{t+1} and the next action a_{t+1}.
  next_mass[b, t]      η̄(x_{t+1}, ·)        [B, n, A, M]  target-network masses
  target_policy[b, t]  π(·|x_{t+1})          [B, n, A]
  next_actions[b, t]   a_{t+1}               [B, n]        (entry n−1 is never read)
  behaviour_probs[b,t] μ(a_{t+1}|x_{t+1})    [B, n]        (Retrace only; entry n−1 never read)
  rewards[b, t]        r_t                   [B, n]
  terminals[b, t]      x_{t+1} is terminal   [B, n]        (optional; later entries are ignored)

Per-branch target (one projection per branch, all branches folded into one projection):
  G_t = Σ_{s≤t} γ^s r_s,  w_0 = 1,  w_{t+1} = w_t c_{t+1}
  target = Π_C Σ_t w_t [ (G_t + γ^{t+1} z)_# ( η̄(x_{t+1}, π) − c_{t+1} η̄(x_{t+1}, a_{t+1}) ) ]
  with c_n := 0 (the last branch bootstraps on η̄(x_n, π) alone) and, at a terminal x_{t+1},
  the branch replaced by w_t δ_{G_t} and nothing after it. The a′-mixture Σ_{a′} π(a′) η̄(x, a′)
  is folded *before* projecting (Π_C is linear), so one projection of n·M (+ n terminal) atoms
  serves the whole window.
Per-step target (backward recursion, one projection per step; its expected operator has the
one-step categorical fixed point η_C for every λ and μ):
  Y_{n−1} = Π_C b_{r_{n−1},γ} η̄(x_n, π),
  Y_t = Π_C b_{r_t,γ}[η̄(x_{t+1}, π) − c_{t+1} η̄(x_{t+1}, a_{t+1}) + c_{t+1} Y_{t+1}],
  Y_t = Π_C δ_{r_t} at a terminal x_{t+1}.

Traces c_{t+1} = c(x_{t+1}, a_{t+1}): "q_lambda" λ (no behaviour probabilities needed),
"retrace" λ·min(1, π/μ), "tree_backup" λ·π, and "n_step" — the uncorrected n-step target
Π_C (G_{n−1} + γ^n z)_# η̄(x_n, π) (C51 with an n-step return; not a member of the trace family,
its fixed point is not η_C off-policy). n = 1 with any trace is one-step C51 (greedy π) or
expected-SARSA C51 (stochastic π).
"""

from __future__ import annotations

from array_api_compat import array_namespace
from array_api_compat import device as array_device

from ...envs.checks import check_choice, check_scalar
from .categorical import (
    PROJECTION_METHODS,
    CategoricalSupport,
    _check_support,
    _checked,
    _project_unchecked,
)

__all__ = ["MULTISTEP_TRACES", "sampled_multistep_target", "trace_coefficient"]

MULTISTEP_TRACES = ("q_lambda", "retrace", "tree_backup", "n_step")
WINDOW_PROJECTIONS = ("per_branch", "per_step")


def trace_coefficient(trace: str, lam: float, target_prob, behaviour_prob=None):
    """Trace c = c(x, a) elementwise from π(a|x) (and μ(a|x) for Retrace); any array shape.

    q_lambda: λ; retrace: λ·min(1, π/μ) (λ where μ = 0: such an action is never replayed);
    tree_backup: λ·π; n_step: 1 (unused by the uncorrected target).
    """
    trace = check_choice("trace", trace, MULTISTEP_TRACES)
    lam = check_scalar("lam", lam, low=0.0, high=1.0)
    target_prob = _checked("target_prob", target_prob)
    if trace == "retrace":
        if behaviour_prob is None:
            raise ValueError("behaviour_prob is required when trace='retrace', got None")
        behaviour_prob = _checked("behaviour_prob", behaviour_prob)
        if tuple(behaviour_prob.shape) != tuple(target_prob.shape):
            raise ValueError(
                f"behaviour_prob must have shape {tuple(target_prob.shape)}, got "
                f"{tuple(behaviour_prob.shape)}"
            )
        xp = array_namespace(behaviour_prob)
        if bool(xp.any(behaviour_prob < 0)) or bool(xp.any(behaviour_prob > 1)):
            raise ValueError("behaviour_prob must lie in [0, 1]")
    return _trace(trace, lam, target_prob, behaviour_prob)


def _trace(trace: str, lam: float, target_prob, behaviour_prob):
    """:func:`trace_coefficient` for validated inputs."""
    xp = array_namespace(target_prob)
    if trace == "q_lambda":
        return xp.full(target_prob.shape, lam, dtype=target_prob.dtype)
    if trace == "tree_backup":
        return lam * target_prob
    if trace == "n_step":
        return xp.ones_like(target_prob)
    positive = behaviour_prob > 0
    safe = xp.where(positive, behaviour_prob, xp.ones_like(behaviour_prob))
    ratio = xp.where(positive, xp.minimum(target_prob / safe, xp.ones_like(safe)), xp.ones_like(safe))
    return lam * ratio


def _as_array(name: str, x, *, last_dim: int | None = None):
    """Shape-only conversion used when ``validate=False`` (no finiteness scan)."""
    try:
        array_namespace(x)
    except TypeError:
        return _checked(name, x, last_dim=last_dim)
    return x


def _gather_last(x, index):
    """x[b, t, index[b, t](, :)]: x [B, n, A(, M)], index [B, n] → [B, n(, M)]."""
    xp = array_namespace(x)
    if x.ndim == 4:
        index = xp.broadcast_to(index[:, :, None, None], (*index.shape, 1, x.shape[3]))
        return xp.take_along_axis(x, index, axis=2)[:, :, 0, :]
    return xp.take_along_axis(x, index[:, :, None], axis=2)[:, :, 0]


def sampled_multistep_target(
    next_mass,
    target_policy,
    next_actions,
    rewards,
    *,
    support: CategoricalSupport,
    gamma: float,
    lam: float,
    trace: str = "q_lambda",
    behaviour_probs=None,
    terminals=None,
    projection: str = "per_branch",
    method: str = "scatter",
    validate: bool = True,
):
    """Sampled multi-step distributional targets for B windows of length n, mass [B, M] (signed).

    Args (layout in the module docstring):
      next_mass: [B, n, A, M] η̄(x_{t+1}, ·) from the target network (probabilities in practice;
        any finite masses are accepted, the target is linear in them).
      target_policy: [B, n, A] π(·|x_{t+1}) (e.g. greedy, or the mixture απ + (1 − α)μ).
      next_actions: [B, n] integer a_{t+1}.
      rewards: [B, n].
      gamma: γ ∈ [0, 1).  lam: λ ∈ [0, 1].  trace: one of ``MULTISTEP_TRACES``.
      behaviour_probs: [B, n] μ(a_{t+1}|x_{t+1}) (required by "retrace").
      terminals: [B, n] booleans or 0/1 (x_{t+1} terminal); None means no terminal.
      projection: "per_branch" (default; one projection per branch) or "per_step".
      method: projection method of :func:`categorical_projection` ("scatter" or "hat").
      validate: check every input for finiteness and ranges (default). ``False`` keeps only the
        shape checks — for hot loops whose inputs come from their own network and replay.

    Returns:
      [B, M] masses, total mass 1 per row (up to rounding), signed in general (Q(λ), and sampled
      Retrace/tree-backup windows). Differentiable in ``next_mass`` on torch (callers detach).
    """
    support = _check_support(support)
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    lam = check_scalar("lam", lam, low=0.0, high=1.0)
    trace = check_choice("trace", trace, MULTISTEP_TRACES)
    projection = check_choice("projection", projection, WINDOW_PROJECTIONS)
    method = check_choice("method", method, PROJECTION_METHODS)
    check = _checked if validate else _as_array
    next_mass = check("next_mass", next_mass, last_dim=support.m)
    if next_mass.ndim != 4:
        raise ValueError(f"next_mass must have shape [B, n, A, M], got {tuple(next_mass.shape)}")
    B, n, A, M = next_mass.shape
    if n < 1:
        raise ValueError("next_mass must hold windows of length n ≥ 1, got n = 0")
    xp = array_namespace(next_mass)
    target_policy = check("target_policy", target_policy)
    if tuple(target_policy.shape) != (B, n, A):
        raise ValueError(
            f"target_policy must have shape {(B, n, A)}, got {tuple(target_policy.shape)}"
        )
    rewards = check("rewards", rewards)
    if tuple(rewards.shape) != (B, n):
        raise ValueError(f"rewards must have shape {(B, n)}, got {tuple(rewards.shape)}")
    try:
        array_namespace(next_actions)
    except TypeError as error:
        raise ValueError(f"next_actions must be an integer array of shape {(B, n)}") from error
    if tuple(next_actions.shape) != (B, n) or not xp.isdtype(next_actions.dtype, "integral"):
        raise ValueError(
            f"next_actions must be an integer array of shape {(B, n)}, got "
            f"{tuple(next_actions.shape)} of {next_actions.dtype}"
        )
    if validate and n > 1 and (bool(xp.any(next_actions[:, :-1] < 0))
                               or bool(xp.any(next_actions[:, :-1] >= A))):
        raise ValueError(f"next_actions must lie in [0, {A})")
    next_actions = xp.clip(next_actions, 0, A - 1)  # entry n − 1 is never read
    if terminals is None:
        alive_step = xp.ones((B, n), dtype=next_mass.dtype)
    else:
        try:  # booleans or 0/1 numbers (not routed through the real-number check)
            array_namespace(terminals)
        except TypeError:
            terminals = _checked("terminals", terminals)
        if tuple(terminals.shape) != (B, n):
            raise ValueError(f"terminals must have shape {(B, n)}, got {tuple(terminals.shape)}")
        alive_step = 1.0 - xp.astype(terminals != 0, next_mass.dtype)
    corrected = trace != "n_step" and n > 1  # the correction terms are read at all
    pi_taken = _gather_last(target_policy, next_actions) if corrected else None  # [B, n]
    if trace == "retrace":
        if behaviour_probs is None:
            raise ValueError("behaviour_probs is required when trace='retrace', got None")
        behaviour_probs = check("behaviour_probs", behaviour_probs)
        if tuple(behaviour_probs.shape) != (B, n):
            raise ValueError(
                f"behaviour_probs must have shape {(B, n)}, got {tuple(behaviour_probs.shape)}"
            )
        # entry n − 1 is never read: replace it so that padding values cannot fail validation
        last = xp.arange(n, device=array_device(behaviour_probs)) == n - 1
        behaviour_probs = xp.where(last, xp.ones_like(behaviour_probs), behaviour_probs)
    if validate and trace == "retrace":
        if bool(xp.any(behaviour_probs < 0)) or bool(xp.any(behaviour_probs > 1)):
            raise ValueError("behaviour_probs must lie in [0, 1]")
    bootstrap = xp.sum(target_policy[..., None] * next_mass, axis=2)  # [B, n, M] η̄(x_{t+1}, π)
    if corrected:
        traces = _trace(trace, lam, pi_taken, behaviour_probs)  # [B, n], c_{t+1}
        taken = _gather_last(next_mass, next_actions)  # [B, n, M] η̄(x_{t+1}, a_{t+1})
    else:  # n_step, or n = 1: no correction term is ever read
        traces = taken = None
    z = support.atoms_like(next_mass)
    if projection == "per_step":
        return _per_step(bootstrap, taken, traces, rewards, alive_step, z, support, gamma, trace, method)
    atoms, masses = [], []
    weight = xp.ones((B,), dtype=next_mass.dtype)  # w_t · 1[no terminal before x_{t+1}]
    G = xp.zeros((B,), dtype=next_mass.dtype)
    disc = 1.0  # γ^t
    for t in range(n):
        G = G + disc * rewards[:, t]
        alive = alive_step[:, t]
        if terminals is not None:
            atoms.append(G[:, None])  # the terminal Dirac δ_{G_t}
            masses.append((weight * (1.0 - alive))[:, None])
        if trace == "n_step" and t < n - 1:  # no branch before the last step
            weight = weight * alive
            disc *= gamma
            continue
        if trace == "n_step" or t == n - 1:
            branch = bootstrap[:, t, :]
            c = xp.zeros((B,), dtype=next_mass.dtype)
        else:
            c = traces[:, t]
            branch = bootstrap[:, t, :] - c[:, None] * taken[:, t, :]
        atoms.append(G[:, None] + (disc * gamma) * z)
        masses.append((weight * alive)[:, None] * branch)
        weight = weight * alive * c
        disc *= gamma
    atoms_src = xp.concat(atoms, axis=-1)
    mass_src = xp.concat(masses, axis=-1)
    return _project_unchecked(atoms_src, mass_src, support, method)


def _per_step(bootstrap, taken, traces, rewards, alive_step, z, support, gamma, trace, method):
    """Backward recursion with one projection per step (module docstring), [B, M]."""
    xp = array_namespace(bootstrap)
    B, n, M = bootstrap.shape
    Y = None
    for t in range(n - 1, -1, -1):
        if t == n - 1:
            inner = bootstrap[:, t, :]
        elif trace == "n_step":
            inner = Y
        else:
            c = traces[:, t][:, None]
            inner = bootstrap[:, t, :] - c * taken[:, t, :] + c * Y
        alive = alive_step[:, t][:, None]
        r = rewards[:, t][:, None]
        atoms = xp.concat([r, r + gamma * z], axis=-1)
        # terminal: everything on δ_{r_t}; otherwise the pushed-forward mixture
        mass = xp.concat([1.0 - alive, alive * inner], axis=-1)
        Y = _project_unchecked(atoms, mass, support, method)
    return Y
