"""Numba kernels for distributional Q(λ), Retrace and tree-backup (expected and sampled).

Private: validated inputs only (see ``fixpoint_rl.tabular.qlambda``). Shapes: S states, A actions,
M atoms, E outcomes (flattened (s, a) → (s', reward) pairs, CSR layout by s·A + a), n window
length. The projection is the scatter twin in ``_kernels/categorical.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .categorical import _project_add, _project_pushforward_add


@njit(cache=True)
def _project_rows(mixed, values, probs, gamma, v_min, v_max, delta):
    """out[sa] = Σ_k probs[sa, k] Π_C (b_{values[sa, k], γ})_# mixed[sa].

    mixed: [SA, M] grid masses (signed); values, probs: [SA, K]. Returns [SA, M]. The scatter of
    ``_project_add`` is inlined here (indexing the 2-D output directly) for speed.
    """
    n_rows, m = mixed.shape
    n_out = values.shape[1]
    out = np.zeros((n_rows, m))
    for row in range(n_rows):
        for k in range(n_out):
            p = probs[row, k]
            if p == 0.0:
                continue
            r = values[row, k]
            for j in range(m):
                w = p * mixed[row, j]
                z = v_min + j * delta
                if j == m - 1:
                    z = v_max
                y = r + gamma * z
                if y <= v_min:
                    out[row, 0] += w
                elif y >= v_max:
                    out[row, m - 1] += w
                else:
                    b = (y - v_min) / delta
                    lower = int(b)  # b > 0, so truncation is floor
                    if lower >= m - 1:
                        out[row, m - 1] += w
                    else:
                        frac = b - lower
                        out[row, lower] += w * (1.0 - frac)
                        out[row, lower + 1] += w * frac
    return out


@njit(cache=True)
def _projection_table(values, probs, gamma, v_min, v_max, delta, m):
    """Precomputed scatter of Π_C (b_{values[sa, k], γ})_# onto the grid, fixed across sweeps.

    For every row sa, reward outcome k and source atom z_j, the target y = values[sa, k] + γ z_j is
    clipped to [v_min, v_max] and split between atoms l and l + 1 (Rowland et al. 2018, arXiv
    1802.08163, Eq. 7 written as a scatter; same arithmetic as ``_project_add``):
      lower[sa, k, j] = l,  weight_lower = p (1 − f),  weight_upper = p f,
    with f ∈ [0, 1] the fractional position and p = probs[sa, k]. The ends put everything on one
    atom (l = 0, f = 0 at or below v_min; l = M − 2, f = 1 at or above v_max), so every entry is a
    valid pair (l, l + 1). values, probs: [SA, K]. Returns lower [SA, K, M] int32 and the two weight
    arrays [SA, K, M] float64.
    """
    n_rows, n_out = values.shape
    lower = np.zeros((n_rows, n_out, m), dtype=np.int32)
    weight_lower = np.zeros((n_rows, n_out, m))
    weight_upper = np.zeros((n_rows, n_out, m))
    for row in range(n_rows):
        for k in range(n_out):
            p = probs[row, k]
            r = values[row, k]
            for j in range(m):
                z = v_min + j * delta
                if j == m - 1:
                    z = v_max
                y = r + gamma * z
                if y <= v_min:
                    lo, frac = 0, 0.0
                elif y >= v_max:
                    lo, frac = m - 2, 1.0
                else:
                    b = (y - v_min) / delta
                    lo = int(b)  # b > 0, so truncation is floor
                    if lo >= m - 1:
                        lo, frac = m - 2, 1.0
                    else:
                        frac = b - lo
                lower[row, k, j] = lo
                weight_lower[row, k, j] = p * (1.0 - frac)
                weight_upper[row, k, j] = p * frac
    return lower, weight_lower, weight_upper


@njit(cache=True, nogil=True)
def _project_rows_table_into(mixed, lower, weight_lower, weight_upper, out):
    """out[sa] = Σ_k Π_C (b_{r_k,γ})_# mixed[sa] with the tables of ``_projection_table``.

    mixed: [SA, M] (signed); out: [SA, M], overwritten. Same sums in the same order as
    ``_project_rows``; the only arithmetic difference is p·(1 − f)·w versus p·w·(1 − f) (one
    rounding, ≤ 1 ulp per term). Releases the GIL, so row blocks can run on Python threads.
    """
    n_rows, m = mixed.shape
    n_out = lower.shape[1]
    out[:, :] = 0.0
    for row in range(n_rows):
        for k in range(n_out):
            for j in range(m):
                w = mixed[row, j]
                lo = lower[row, k, j]
                out[row, lo] += w * weight_lower[row, k, j]
                out[row, lo + 1] += w * weight_upper[row, k, j]


@njit(cache=True)
def _project_rows_table(mixed, lower, weight_lower, weight_upper):
    """``_project_rows_table_into`` into a new [SA, M] array."""
    out = np.empty(mixed.shape)
    _project_rows_table_into(mixed, lower, weight_lower, weight_upper, out)
    return out


@njit(cache=True)
def _backup_csr_table(Y, offsets, columns, weights, lower, weight_lower, weight_upper):
    """Sparse-P backup fused in one pass per row: mixed = Σ_e weights[e] Y[columns[e]] into a [M]
    scratch row, then the table scatter of ``_project_rows_table`` (no [SA, M] intermediate).

    Y: [S, M]; offsets: [SA + 1]; columns, weights: [E]; tables [SA, K, M]. Returns [SA, M].
    """
    n_rows = offsets.shape[0] - 1
    m = Y.shape[1]
    n_out = lower.shape[1]
    out = np.zeros((n_rows, m))
    mixed = np.empty(m)
    for row in range(n_rows):
        for j in range(m):
            mixed[j] = 0.0
        for e in range(offsets[row], offsets[row + 1]):
            w = weights[e]
            col = columns[e]
            for j in range(m):
                mixed[j] += w * Y[col, j]
        for k in range(n_out):
            for j in range(m):
                w = mixed[j]
                lo = lower[row, k, j]
                out[row, lo] += w * weight_lower[row, k, j]
                out[row, lo + 1] += w * weight_upper[row, k, j]
    return out


@njit(cache=True)
def _mix_rows_csr(Y, offsets, columns, weights):
    """mixed[row] = Σ_e weights[e] Y[columns[e]] over e in offsets[row]:offsets[row+1] (sparse P @ Y).

    Y: [S, M]; offsets: [R + 1]; columns, weights: [E]. Returns [R, M].
    """
    n_rows = offsets.shape[0] - 1
    m = Y.shape[1]
    out = np.zeros((n_rows, m))
    for row in range(n_rows):
        for e in range(offsets[row], offsets[row + 1]):
            w = weights[e]
            col = columns[e]
            for j in range(m):
                out[row, j] += w * Y[col, j]
    return out


@njit(cache=True)
def _backup_outcomes(Y, offsets, next_state, reward, prob, gamma, v_min, v_max, delta):
    """out[sa] = Σ_e prob_e Π_C (b_{reward_e, γ})_# Y[next_state_e] over the outcomes e of sa.

    Y: [S, M]; offsets: [SA + 1]; next_state, reward, prob: [E]. Returns [SA, M].
    """
    n_rows = offsets.shape[0] - 1
    m = Y.shape[1]
    out = np.zeros((n_rows, m))
    scratch = np.zeros(m)
    for row in range(n_rows):
        for e in range(offsets[row], offsets[row + 1]):
            p = prob[e]
            if p == 0.0:
                continue
            for j in range(m):
                scratch[j] = p * Y[next_state[e], j]
            _project_pushforward_add(out[row], scratch, reward[e], gamma, v_min, v_max, delta)
    return out


@njit(cache=True)
def _mix_next(eta, U, coeff_eta, rho):
    """Y[s'] = Σ_a' coeff_eta[s', a'] η[s', a'] + Σ_a' rho[s', a'] U[s', a'].  eta, U: [S, A, M]."""
    S, A, m = eta.shape
    Y = np.zeros((S, m))
    for s in range(S):
        for a in range(A):
            c = coeff_eta[s, a]
            r = rho[s, a]
            for j in range(m):
                Y[s, j] += c * eta[s, a, j] + r * U[s, a, j]
    return Y


@njit(cache=True)
def _sample_index(cumulative, u):
    """Smallest i with u < cumulative[i] (cumulative: non-decreasing, last entry ≈ 1)."""
    n = cumulative.shape[0]
    for i in range(n):
        if u < cumulative[i]:
            return i
    return n - 1


@njit(cache=True)
def _sampled_target(
    eta, pi, trace_c, states, actions, rewards, gamma, per_step, uncorrected, v_min, v_max, delta
):
    """Sampled multi-step target from one window (Tang et al. 2024, arXiv 2402.05766, Q(λ)-C51 target), mass [M] (signed).

    states, actions: [n + 1] (x_0..x_n, a_0..a_n), rewards: [n] (r_0..r_{n−1}); trace_c [S, A]
    gives c(x, a): λ (Q(λ)), λ·min(1, π/μ) (Retrace), λπ (tree-backup) or 1 (uncorrected n-step).
    per_step = True: backward recursion with one projection per step,
      Y_{n−1} = Π_C b_{r_{n−1},γ} η̄(x_n, π),
      Y_t = Π_C b_{r_t,γ}[η̄(x_{t+1}, π) − c_{t+1} η̄(x_{t+1}, a_{t+1}) + c_{t+1} Y_{t+1}].
    per_step = False: one projection per branch (the §2.5 forward loop with atoms G + γ^{t+1} z).
    uncorrected = True: the plain n-step target Π_C (G_{0:n−1} + γ^n z)_# η̄(x_n, π) (C51 n-step;
    trace_c is ignored); per-step form Y_t = Π_C b_{r_t,γ} Y_{t+1}.
    """
    n = rewards.shape[0]
    S, A, m = eta.shape
    out = np.zeros(m)
    if per_step:
        Y = np.zeros(m)
        nxt = np.zeros(m)
        for t in range(n - 1, -1, -1):
            x1 = states[t + 1]
            for j in range(m):
                acc = 0.0
                for b in range(A):
                    acc += pi[x1, b] * eta[x1, b, j]
                nxt[j] = acc
            if t < n - 1:
                if uncorrected:
                    for j in range(m):
                        nxt[j] = Y[j]
                else:
                    c = trace_c[x1, actions[t + 1]]
                    for j in range(m):
                        nxt[j] += c * (Y[j] - eta[x1, actions[t + 1], j])
            for j in range(m):
                Y[j] = 0.0
            _project_pushforward_add(Y, nxt, rewards[t], gamma, v_min, v_max, delta)
        for j in range(m):
            out[j] = Y[j]
        return out
    w = 1.0
    G = 0.0
    disc = 1.0
    branch = np.zeros(m)
    for t in range(n):
        G += disc * rewards[t]
        x1 = states[t + 1]
        if uncorrected and t < n - 1:
            disc *= gamma
            continue
        for j in range(m):
            acc = 0.0
            for b in range(A):
                acc += pi[x1, b] * eta[x1, b, j]
            branch[j] = acc
        c = 0.0
        if t < n - 1:
            c = trace_c[x1, actions[t + 1]]
            for j in range(m):
                branch[j] -= c * eta[x1, actions[t + 1], j]
        scale = disc * gamma
        for j in range(m):
            z = v_min + j * delta
            if j == m - 1:
                z = v_max
            if branch[j] != 0.0:
                _project_add(out, G + scale * z, w * branch[j], v_min, v_max, delta)
        w *= c
        disc *= gamma
    return out


@njit(cache=True)
def _td_learning_chunk(
    eta,
    pi,
    mu_cumulative,
    trace_c,
    offsets,
    next_state,
    reward,
    prob_cumulative,
    gamma,
    per_step,
    uncorrected,
    v_min,
    v_max,
    delta,
    buffer_states,
    buffer_actions,
    buffer_rewards,
    filled,
    counts,
    step_exponent,
    n_updates,
    rng,
):
    """Run ``n_updates`` tabular TD updates along one continuing μ-trajectory (in place).

    The window buffer holds the last n + 1 states/actions and n rewards (``filled`` of them are
    valid, carried across calls; buffer_states[filled] and buffer_actions[filled] are
    always set: the caller draws the first state and action). Once full, (x_0, a_0) of the window moves towards the sampled
    target: η(x_0, a_0) ← (1 − α) η(x_0, a_0) + α · target, α = counts(x_0, a_0)^(−step_exponent).
    Returns the new ``filled``.
    """
    n = buffer_rewards.shape[0]
    A = eta.shape[1]
    done = 0
    while done < n_updates:
        x = buffer_states[filled]
        a = buffer_actions[filled]
        row = x * A + a
        e = offsets[row] + _sample_index(
            prob_cumulative[offsets[row] : offsets[row + 1]], rng.random()
        )
        x1 = next_state[e]
        buffer_rewards[filled] = reward[e]
        buffer_states[filled + 1] = x1
        buffer_actions[filled + 1] = _sample_index(mu_cumulative[x1], rng.random())
        filled += 1
        if filled == n:
            x0 = buffer_states[0]
            a0 = buffer_actions[0]
            target = _sampled_target(
                eta,
                pi,
                trace_c,
                buffer_states,
                buffer_actions,
                buffer_rewards,
                gamma,
                per_step,
                uncorrected,
                v_min,
                v_max,
                delta,
            )
            counts[x0, a0] += 1.0
            alpha = counts[x0, a0] ** (-step_exponent)
            for j in range(eta.shape[2]):
                eta[x0, a0, j] = (1.0 - alpha) * eta[x0, a0, j] + alpha * target[j]
            # slide the window by one step
            for i in range(n):
                buffer_states[i] = buffer_states[i + 1]
                buffer_actions[i] = buffer_actions[i + 1]
            for i in range(n - 1):
                buffer_rewards[i] = buffer_rewards[i + 1]
            filled = n - 1
            done += 1
    return filled


@njit(cache=True)
def _monte_carlo_returns(
    start_states,
    start_actions,
    pi_cumulative,
    offsets,
    next_state,
    reward,
    prob_cumulative,
    gamma,
    horizon,
    n_actions,
    rng,
):
    """Discounted returns Σ_{t<H} γ^t R_t of trajectories from each (x_0, a_0) under π: [B]."""
    batch = start_states.shape[0]
    out = np.zeros(batch)
    for i in range(batch):
        x = start_states[i]
        a = start_actions[i]
        disc = 1.0
        total = 0.0
        for _ in range(horizon):
            row = x * n_actions + a
            e = offsets[row] + _sample_index(
                prob_cumulative[offsets[row] : offsets[row + 1]], rng.random()
            )
            total += disc * reward[e]
            disc *= gamma
            x = next_state[e]
            a = _sample_index(pi_cumulative[x], rng.random())
        out[i] = total
    return out
