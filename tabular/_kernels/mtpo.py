"""Numba kernels for MTPO on layered dialogue games (layout: fixpoint_rl.envs.dialogue docstring).

All kernels sweep the flat CSR arrays once: forward in state order (reach probabilities), backward
in reverse state order (values). Shapes: N states, N_dec decision states, A actions, F final
states, X contexts. Scalar-loop twins of ``kl_divergence`` / ``mirror_step_log`` from
``tabular.core.mirror`` are used inline; parity is tested against the numpy implementations.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# update codes for _backward_step
EVALUATE = 0  # only values (no policy update)
MTPO = 1  # log π' = αη log μ + (1 − αη) log π + η Q   (eq. 2)
NASH_MD = 2  # log π' = log π + η Q   (π is the mixture π^α_t; MTPO-τ)
SOFT_BEST_RESPONSE = 3  # values by soft-max backup: V = α log Σ μ exp(Q̄/α); policy = soft-greedy
REWARD_SOFT = SOFT_BEST_RESPONSE


@njit(cache=True)
def _forward_reach(policy, starts, nxt, probs, num_states, num_contexts):
    """Reach probabilities [N] of ``policy`` [N_dec, A], conditional on the context (x_1 has mass 1)."""
    n_dec, A = policy.shape
    reach = np.zeros(num_states)
    for c in range(num_contexts):
        reach[c] = 1.0
    for s in range(n_dec):
        r = reach[s]
        if r == 0.0:
            continue
        for a in range(A):
            w = r * policy[s, a]
            if w == 0.0:
                continue
            k = s * A + a
            for e in range(starts[k], starts[k + 1]):
                reach[nxt[e]] += w * probs[e]
    return reach


@njit(cache=True)
def _terminal_values(reach, pref, pref_starts, final_starts, n_dec, out):
    """out[n_dec + i] = P(x_i ≻ π') = Σ_j P(x_i ≻ x_j | c) reach[x_j] for every final state x_i."""
    X = final_starts.shape[0] - 1
    for c in range(X):
        lo = final_starts[c]
        size = final_starts[c + 1] - lo
        base = pref_starts[c]
        for i in range(size):
            acc = 0.0
            row = base + i * size
            for j in range(size):
                acc += pref[row + j] * reach[n_dec + lo + j]
            out[n_dec + lo + i] = acc


@njit(cache=True)
def _state_backup(s, policy, log_ref, alpha, eta, mode, starts, nxt, probs, values, q, kl, new_policy):
    """Backup of one decision state s (reads values of layer h+1, writes values[s], q[s], kl[s],
    new_policy[s]); q[s] and new_policy[s] double as scratch, so states of a layer are independent."""
    A = policy.shape[1]
    qbar = q[s]
    logits = new_policy[s]
    for a in range(A):
        k = s * A + a
        acc = 0.0
        for e in range(starts[k], starts[k + 1]):
            acc += probs[e] * values[nxt[e]]
        qbar[a] = acc
    if mode == SOFT_BEST_RESPONSE:
        m = -np.inf
        for a in range(A):
            logits[a] = log_ref[s, a] + qbar[a] / alpha
            if logits[a] > m:
                m = logits[a]
        total = 0.0
        for a in range(A):
            total += np.exp(logits[a] - m)
        lse = m + np.log(total)
        values[s] = alpha * lse
        kls = 0.0
        for a in range(A):
            p = np.exp(logits[a] - lse)
            if p > 0.0:
                kls += p * (logits[a] - lse - log_ref[s, a])
            new_policy[s, a] = p
        kl[s] = kls
        return
    kls = 0.0
    for a in range(A):
        p = policy[s, a]
        if p > 0.0:
            kls += p * (np.log(p) - log_ref[s, a])
    kl[s] = kls
    v = 0.0
    for a in range(A):
        q[s, a] = qbar[a] - alpha * kls
        v += policy[s, a] * q[s, a]
    values[s] = v
    if mode == EVALUATE:
        return
    m = -np.inf
    for a in range(A):
        p = policy[s, a]
        if mode == MTPO:
            if p > 0.0:
                logits[a] = alpha * eta * log_ref[s, a] + (1.0 - alpha * eta) * np.log(p) + eta * q[s, a]
            elif alpha * eta >= 1.0:
                logits[a] = log_ref[s, a] + eta * q[s, a]
            else:
                logits[a] = -np.inf
        else:
            logits[a] = np.log(p) + eta * q[s, a] if p > 0.0 else -np.inf
        if logits[a] > m:
            m = logits[a]
    total = 0.0
    for a in range(A):
        logits[a] = np.exp(logits[a] - m)
        total += logits[a]
    for a in range(A):
        new_policy[s, a] = logits[a] / total


@njit(cache=True)
def _backward_step(policy, log_ref, alpha, eta, mode, starts, nxt, probs, values, q, kl, new_policy):
    """Backward induction over decision states (reverse order), fused with the policy update.

    Inputs: ``values`` [N] with the final entries filled (terminal V); ``policy`` [N_dec, A] the
    policy being evaluated. Outputs: values (decision entries), q [N_dec, A] with
    Q(x, y) = Σ p V(x') − α KL(π‖μ)[x], kl [N_dec], and for mode ≠ EVALUATE new_policy.
    Mode SOFT_BEST_RESPONSE: V(x) = α log Σ_y μ exp(Q̄(x, y)/α), q holds Q̄ = Σ p V(x'), and
    new_policy the soft-greedy policy ∝ μ exp(Q̄/α); kl holds KL of that policy to μ.
    ``new_policy`` must not alias ``policy``.
    """
    for s in range(policy.shape[0] - 1, -1, -1):
        _state_backup(s, policy, log_ref, alpha, eta, mode, starts, nxt, probs, values, q, kl,
                      new_policy)


@njit(cache=True)
def _geometric_mixture(policy, log_ref, beta, out):
    """out ∝ π^(1−β) μ^β per state (twin of mirror.geometric_mixture_log)."""
    n_dec, A = policy.shape
    row = np.empty(A)
    for s in range(n_dec):
        m = -np.inf
        for a in range(A):
            p = policy[s, a]
            if beta >= 1.0:
                row[a] = log_ref[s, a]
            elif p > 0.0:
                row[a] = (1.0 - beta) * np.log(p) + beta * log_ref[s, a]
            else:
                row[a] = -np.inf
            if row[a] > m:
                m = row[a]
        total = 0.0
        for a in range(A):
            row[a] = np.exp(row[a] - m)
            total += row[a]
        for a in range(A):
            out[s, a] = row[a] / total


@njit(cache=True)
def _sample_final_states(policy, starts, nxt, probs, num_contexts, num_samples, rng):
    """[X, num_samples] final states of trajectories of ``policy`` from each context's x_1."""
    n_dec, A = policy.shape
    out = np.empty((num_contexts, num_samples), dtype=np.int64)
    for c in range(num_contexts):
        for j in range(num_samples):
            s = c
            while s < n_dec:
                u = rng.random()
                a = A - 1
                acc = 0.0
                for b in range(A):
                    acc += policy[s, b]
                    if u < acc:
                        a = b
                        break
                k = s * A + a
                u = rng.random()
                acc = 0.0
                nxt_state = nxt[starts[k + 1] - 1]
                for e in range(starts[k], starts[k + 1]):
                    acc += probs[e]
                    if u < acc:
                        nxt_state = nxt[e]
                        break
                s = nxt_state
            out[c, j] = s
    return out


@njit(cache=True)
def _sampled_terminal_values(opponents, pref, pref_starts, final_starts, n_dec, rng, out):
    """Unbiased terminal values: out[x] = mean_j Bernoulli(P(x ≻ x'_j | c)) over the sampled
    opponent final states x'_j of context c (one Bernoulli comparison per pair)."""
    X, n = opponents.shape
    for c in range(X):
        lo = final_starts[c]
        size = final_starts[c + 1] - lo
        base = pref_starts[c]
        for i in range(size):
            acc = 0.0
            for j in range(n):
                col = opponents[c, j] - n_dec - lo
                if rng.random() < pref[base + i * size + col]:
                    acc += 1.0
            out[n_dec + lo + i] = acc / n


# --- layer-by-layer sweep with precomputed log π and 32-bit successors ------------------------------
#
# ``_backward_layers`` is the sweep the library uses: layers from the last to the first, and inside
# a layer the states in ascending memory order, so the reads of policy / log π / transitions and
# the writes of q / values stream forwards (the fused ``_backward_step`` walks every array
# backwards). Successor indices are uint32 (half the bytes of the random gather values[nxt[e]]'s
# index stream, and unsigned: Numba then skips the negative-index wraparound test), and log π comes in precomputed by one vectorised ``np.log`` over the whole policy
# instead of a scalar log per entry inside the loop. Results equal ``_backward_step`` exactly
# where the log is the same float (numpy's and the kernel's log agree to ≤ 1 ulp; tested at 1e-12).


@njit(cache=True)
def _soft_backup(s, log_ref, alpha, starts, nxt, probs, values, q, kl, new_policy):
    """SOFT_BEST_RESPONSE backup of state s (as in ``_state_backup``)."""
    A = log_ref.shape[1]
    qbar = q[s]
    logits = new_policy[s]
    for a in range(A):
        k = s * A + a
        acc = 0.0
        for e in range(starts[k], starts[k + 1]):
            acc += probs[e] * values[nxt[e]]
        qbar[a] = acc
    m = -np.inf
    for a in range(A):
        logits[a] = log_ref[s, a] + qbar[a] / alpha
        if logits[a] > m:
            m = logits[a]
    total = 0.0
    for a in range(A):
        total += np.exp(logits[a] - m)
    lse = m + np.log(total)
    values[s] = alpha * lse
    kls = 0.0
    for a in range(A):
        p = np.exp(logits[a] - lse)
        if p > 0.0:
            kls += p * (logits[a] - lse - log_ref[s, a])
        new_policy[s, a] = p
    kl[s] = kls


@njit(cache=True)
def _policy_update(s, policy, log_policy, log_ref, alpha, eta, mode, q, new_policy):
    """new_policy[s] from Q[s] (modes MTPO and NASH_MD, as in ``_state_backup``)."""
    A = policy.shape[1]
    m = -np.inf
    for a in range(A):
        p = policy[s, a]
        if mode == MTPO:
            if p > 0.0:
                z = alpha * eta * log_ref[s, a] + (1.0 - alpha * eta) * log_policy[s, a] + eta * q[s, a]
            elif alpha * eta >= 1.0:
                z = log_ref[s, a] + eta * q[s, a]
            else:
                z = -np.inf
        else:
            z = log_policy[s, a] + eta * q[s, a] if p > 0.0 else -np.inf
        new_policy[s, a] = z
        if z > m:
            m = z
    total = 0.0
    for a in range(A):
        z = np.exp(new_policy[s, a] - m)
        new_policy[s, a] = z
        total += z
    for a in range(A):
        new_policy[s, a] = new_policy[s, a] / total


@njit(cache=True, inline="always")
def _evaluate_state(s, policy, log_policy, log_ref, alpha, starts, nxt, probs, values, q, kl):
    """KL[s], then Q̄ (CSR rows of s), Q = Q̄ − α KL and V(s) = Σ π Q in one pass over actions."""
    A = policy.shape[1]
    kls = 0.0
    for a in range(A):
        p = policy[s, a]
        if p > 0.0:
            kls += p * (log_policy[s, a] - log_ref[s, a])
    kl[s] = kls
    penalty = alpha * kls
    v = 0.0
    for a in range(A):
        k = s * A + a
        acc = 0.0
        for e in range(starts[k], starts[k + 1]):
            acc += probs[e] * values[nxt[e]]
        qa = acc - penalty
        q[s, a] = qa
        v += policy[s, a] * qa
    values[s] = v


@njit(cache=True)
def _backward_layers(policy, log_policy, log_ref, alpha, eta, mode, starts, nxt, probs, values, q,
                     kl, new_policy, layer_starts):
    """Backward induction layer by layer (last decision layer first), states of each layer in
    ascending order; same inputs and outputs as ``_backward_step`` plus ``log_policy`` [N_dec, A]
    (= log π, −inf where π = 0) and ``layer_starts`` [H + 2]. ``nxt``: uint32 successor indices
    (unsigned, so indexing needs no negative-index check; int64 also works). The mode test is
    hoisted out of the state loop."""
    H = layer_starts.shape[0] - 2
    for h in range(H - 1, -1, -1):
        lo = layer_starts[h]
        hi = layer_starts[h + 1]
        if mode == SOFT_BEST_RESPONSE:
            for s in range(lo, hi):
                _soft_backup(s, log_ref, alpha, starts, nxt, probs, values, q, kl, new_policy)
        elif mode == EVALUATE:
            for s in range(lo, hi):
                _evaluate_state(s, policy, log_policy, log_ref, alpha, starts, nxt, probs, values,
                                q, kl)
        else:
            for s in range(lo, hi):
                _evaluate_state(s, policy, log_policy, log_ref, alpha, starts, nxt, probs, values,
                                q, kl)
                _policy_update(s, policy, log_policy, log_ref, alpha, eta, mode, q, new_policy)


@njit(cache=True, parallel=True)
def _backward_layers_parallel(policy, log_policy, log_ref, alpha, eta, mode, starts, nxt, probs,
                              values, q, kl, new_policy, layer_starts):
    """``_backward_layers`` with each layer's states split over Numba's threads (prange). A state
    reads only layer h + 1 and writes only its own entries, with the same operations in the same
    order whatever thread runs it, so the result is bitwise independent of the thread count."""
    H = layer_starts.shape[0] - 2
    for h in range(H - 1, -1, -1):
        lo = layer_starts[h]
        hi = layer_starts[h + 1]
        if mode == SOFT_BEST_RESPONSE:
            for s in prange(lo, hi):
                _soft_backup(s, log_ref, alpha, starts, nxt, probs, values, q, kl, new_policy)
        elif mode == EVALUATE:
            for s in prange(lo, hi):
                _evaluate_state(s, policy, log_policy, log_ref, alpha, starts, nxt, probs, values,
                                q, kl)
        else:
            for s in prange(lo, hi):
                _evaluate_state(s, policy, log_policy, log_ref, alpha, starts, nxt, probs, values,
                                q, kl)
                _policy_update(s, policy, log_policy, log_ref, alpha, eta, mode, q, new_policy)
