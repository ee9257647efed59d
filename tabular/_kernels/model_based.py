"""Numba kernels for model-based distributional RL (DCFP, CDP, QDP, sampling). Private.

All kernels take plain float64 / int64 arrays (validated by ``fixpoint_rl.tabular.model_based``)
and a ``np.random.Generator`` where they draw. Shapes: S states, M atoms, N samples, T horizon.

Conventions shared by every kernel:
  * ``P[x, x']`` transition probabilities, ``R[x, x']`` reward on the transition x → x'.
  * ``atoms[M]`` strictly increasing grid z_0 < … < z_{M−1} (need not be evenly spaced).
  * The categorical projection of a Dirac δ_y puts mass (z_{i+1} − ȳ)/(z_{i+1} − z_i) on z_i and
    the rest on z_{i+1}, where ȳ = clip(y, z_0, z_{M−1}) lies in [z_i, z_{i+1}] (Eq. 7 of Bellemare
    et al. 2017, arXiv 1707.06887, Eq. 7). Its CDF at z_i is G_i(y) = clip((z_{i+1} − ȳ)/(z_{i+1} − z_i), 0, 1)
    for i < M−1 and 1 at i = M−1: piecewise linear and non-increasing in y.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _locate(atoms, y):
    """Index i in [0, M−2] with atoms[i] ≤ clip(y) ≤ atoms[i+1], and the clipped y."""
    m = atoms.shape[0]
    if y <= atoms[0]:
        return 0, atoms[0]
    if y >= atoms[m - 1]:
        return m - 2, atoms[m - 1]
    lo = 0
    hi = m - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if atoms[mid] <= y:
            lo = mid
        else:
            hi = mid
    return lo, y


@njit(cache=True)
def _projected_cdf_at(atoms, i, y):
    """G_i(y): CDF at z_i of Π_C δ_y (scalar twin of the categorical projection in CDF form)."""
    m = atoms.shape[0]
    if i >= m - 1:
        return 1.0
    if y <= atoms[i]:
        return 1.0
    if y >= atoms[i + 1]:
        return 0.0
    return (atoms[i + 1] - y) / (atoms[i + 1] - atoms[i])


@njit(cache=True)
def _project_add(atoms, y, weight, out):
    """out += weight · Π_C δ_y (scatter form; linear in weight, so signed weights are fine)."""
    i, yc = _locate(atoms, y)
    lower = (atoms[i + 1] - yc) / (atoms[i + 1] - atoms[i])
    out[i] += weight * lower
    out[i + 1] += weight * (1.0 - lower)


@njit(cache=True)
def _dcfp_triplet_count(P, R, gamma, atoms):
    """Number of structural non-zeros of A (see ``_dcfp_triplets``)."""
    S = P.shape[0]
    m = atoms.shape[0]
    count = 0
    for x in range(S):
        for xn in range(S):
            if P[x, xn] == 0.0:
                continue
            r = R[x, xn]
            for j in range(m - 1):
                i_lo, _ = _locate(atoms, r + gamma * atoms[j])
                i_hi, _ = _locate(atoms, r + gamma * atoms[j + 1])
                count += i_hi - i_lo + 1
    return count


@njit(cache=True)
def _dcfp_triplets(P, R, gamma, atoms, rows, cols, vals, b):
    """COO triplets of A and the vector b of the DCFP system F = A F + b (Rowland et al. 2024, arXiv 2402.07598, Eq. 10 in CDF coordinates).

    Unknown F[x, i] (i < M−1) is stored at x·(M−1) + i. For a transition x → x' with reward r,
    the CDF-coordinate map of F ↦ CDF(Π_C (b_{r,γ})_# p) is
        C[i, j] = G_i(r + γ z_j) − G_i(r + γ z_{j+1})   (j < M−1),   c[i] = G_i(r + γ z_{M−1}),
    obtained from M_x = L H Dm by summation by parts (last CDF coordinate pinned at 1). C[i, j] ≥ 0
    and is non-zero only where [r + γ z_j, r + γ z_{j+1}] meets (z_i, z_{i+1}), so each column has
    O(1 + 1/γ) entries at most ~2 when γ is near 1. A[(x, i), (x', j)] = P[x, x'] C_{x x'}[i, j],
    b[x, i] = Σ_x' P[x, x'] c_{x x'}[i]. Duplicates (same x, x' block from equal (i, j)) do not occur.
    """
    S = P.shape[0]
    m = atoms.shape[0]
    k = 0
    for x in range(S):
        for xn in range(S):
            p = P[x, xn]
            if p == 0.0:
                continue
            r = R[x, xn]
            for j in range(m - 1):
                y_lo = r + gamma * atoms[j]
                y_hi = r + gamma * atoms[j + 1]
                i_lo, _ = _locate(atoms, y_lo)
                i_hi, _ = _locate(atoms, y_hi)
                for i in range(i_lo, i_hi + 1):
                    rows[k] = x * (m - 1) + i
                    cols[k] = xn * (m - 1) + j
                    vals[k] = p * (_projected_cdf_at(atoms, i, y_lo) - _projected_cdf_at(atoms, i, y_hi))
                    k += 1
            y_top = r + gamma * atoms[m - 1]
            for i in range(m - 1):
                b[x * (m - 1) + i] += p * _projected_cdf_at(atoms, i, y_top)
    return k


@njit(cache=True)
def _cdp_step(P, R, gamma, atoms, probs, out):
    """One categorical DP step out[x] = Σ_x' P[x, x'] Π_C (b_{R[x,x'],γ})_# probs[x'] (shape [S, M])."""
    S = P.shape[0]
    m = atoms.shape[0]
    for x in range(S):
        for i in range(m):
            out[x, i] = 0.0
        for xn in range(S):
            p = P[x, xn]
            if p == 0.0:
                continue
            r = R[x, xn]
            for j in range(m):
                w = p * probs[xn, j]
                if w != 0.0:
                    _project_add(atoms, r + gamma * atoms[j], w, out[x])


@njit(cache=True)
def _cdp_run(P, R, gamma, atoms, probs0, iterations, tol, every):
    """Run CDP from probs0 for at most ``iterations`` steps or until the sup-Cramér change between
    successive iterates is ≤ tol (tol ≤ 0: never stop early). Records the change every ``every``
    steps and at the last step.

    Returns (probs [S, M], steps done, recorded iterations [C], recorded changes [C]).
    """
    S = P.shape[0]
    m = atoms.shape[0]
    current = probs0.copy()
    nxt = np.empty_like(current)
    cap = iterations // every + 2
    rec_it = np.zeros(cap, dtype=np.int64)
    rec_ch = np.zeros(cap)
    c = 0
    done = 0
    for t in range(iterations):
        _cdp_step(P, R, gamma, atoms, current, nxt)
        # sup over states of the Cramér distance ℓ2 between successive iterates (Rowland et al. 2018, arXiv 1802.08163)
        worst = 0.0
        for x in range(S):
            acc = 0.0
            fa = 0.0
            for i in range(m - 1):
                fa += nxt[x, i] - current[x, i]
                acc += fa * fa * (atoms[i + 1] - atoms[i])
            if acc > worst:
                worst = acc
        change = np.sqrt(worst)
        tmp = current
        current = nxt
        nxt = tmp
        done = t + 1
        stop = tol > 0.0 and change <= tol
        if done % every == 0 or stop or done == iterations:
            rec_it[c] = done
            rec_ch[c] = change
            c += 1
        if stop:
            break
    return current, done, rec_it[:c].copy(), rec_ch[:c].copy()


@njit(cache=True)
def _qdp_step(P, R, gamma, theta, out):
    """One quantile DP step (Bellemare, Dabney & Rowland 2023, Ch. 5).

    out[x, i] = the τ_i = (2i+1)/(2M) quantile of Σ_x' P[x, x'] (1/M) Σ_j δ_{R[x,x'] + γ θ[x', j]},
    taken as the smallest atom whose cumulative weight reaches τ_i (the W1-optimal quantile projection).
    """
    S = P.shape[0]
    m = theta.shape[1]
    for x in range(S):
        n = 0
        for xn in range(S):
            if P[x, xn] > 0.0:
                n += m
        values = np.empty(n)
        weights = np.empty(n)
        k = 0
        for xn in range(S):
            p = P[x, xn]
            if p > 0.0:
                for j in range(m):
                    values[k] = R[x, xn] + gamma * theta[xn, j]
                    weights[k] = p / m
                    k += 1
        order = np.argsort(values, kind="mergesort")
        cum = 0.0
        i = 0
        for idx in range(n):
            cum += weights[order[idx]]
            while i < m and cum >= (2.0 * i + 1.0) / (2.0 * m) - 1e-15:
                out[x, i] = values[order[idx]]
                i += 1
            if i == m:
                break
        while i < m:  # rounding: remaining levels take the largest value
            out[x, i] = values[order[n - 1]]
            i += 1


@njit(cache=True)
def _qdp_run(P, R, gamma, theta0, iterations, tol):
    """QDP until the sup-W∞ change between iterates is ≤ tol (tol ≤ 0: fixed count). Returns
    (theta [S, M], steps, changes [iterations])."""
    current = theta0.copy()
    nxt = np.empty_like(current)
    changes = np.full(iterations, np.nan)
    done = 0
    for t in range(iterations):
        _qdp_step(P, R, gamma, current, nxt)
        change = np.max(np.abs(nxt - current))
        tmp = current
        current = nxt
        nxt = tmp
        changes[t] = change
        done = t + 1
        if tol > 0.0 and change <= tol:
            break
    return current, done, changes


@njit(cache=True)
def _draw_next(cum_row, u):
    """Inverse-CDF draw from a cumulative row (last entry forced to 1 by the caller)."""
    lo = 0
    hi = cum_row.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum_row[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True)
def _sample_counts(cum_P, n_samples, rng):
    """counts[x, x'] = number of N i.i.d. draws X' ~ P(x, ·) equal to x' (generative model)."""
    S = cum_P.shape[0]
    counts = np.zeros((S, S), dtype=np.int64)
    for x in range(S):
        for _ in range(n_samples):
            counts[x, _draw_next(cum_P[x], rng.random())] += 1
    return counts


@njit(cache=True)
def _monte_carlo_returns(cum_P, R, gamma, horizon, n_episodes, rng):
    """returns[x, e] = Σ_{t<T} γ^t R[X_t, X_{t+1}] along episode e started at X_0 = x."""
    S = cum_P.shape[0]
    out = np.empty((S, n_episodes))
    for x in range(S):
        for e in range(n_episodes):
            state = x
            total = 0.0
            disc = 1.0
            for _ in range(horizon):
                nxt = _draw_next(cum_P[state], rng.random())
                total += disc * R[state, nxt]
                disc *= gamma
                state = nxt
            out[x, e] = total
    return out


@njit(cache=True)
def _stochastic_cdf_samples(cum_P, R, gamma, atoms, horizon, n, rng):
    """Realisations of the stochastic categorical CDF Bellman equation (Rowland et al. 2024, arXiv 2402.07598, Eq. 16).

    For each start state x and sample k, draw a trajectory X_0 = x, X_1, …, X_T and unroll
    𝔽(X_t) = C_{X_t X_{t+1}} 𝔽(X_{t+1}) + c_{X_t X_{t+1}} backwards from 𝔽(X_T) = CDF of δ_{z_0}.
    In probability coordinates this is p_t = Π_C (b_{r_t,γ})_# p_{t+1}, the same linear map.
    Returns CDFs [S, n, M].
    """
    S = cum_P.shape[0]
    m = atoms.shape[0]
    out = np.empty((S, n, m))
    path = np.empty(horizon + 1, dtype=np.int64)
    cur = np.empty(m)
    nxt = np.empty(m)
    for x in range(S):
        for k in range(n):
            path[0] = x
            for t in range(horizon):
                path[t + 1] = _draw_next(cum_P[path[t]], rng.random())
            for i in range(m):
                cur[i] = 0.0
            cur[0] = 1.0
            for t in range(horizon - 1, -1, -1):
                for i in range(m):
                    nxt[i] = 0.0
                r = R[path[t], path[t + 1]]
                for j in range(m):
                    if cur[j] != 0.0:
                        _project_add(atoms, r + gamma * atoms[j], cur[j], nxt)
                for i in range(m):
                    cur[i] = nxt[i]
            acc = 0.0
            for i in range(m):
                acc += cur[i]
                out[x, k, i] = acc
            out[x, k, m - 1] = 1.0
    return out


# --- sparse transitions (CSR) and the precomputed CDP operator -------------------------------------
#
# The kernels below take the transitions as CSR arrays (indptr [S + 1], indices [E], prob [E],
# reward [E]: the E transitions x → x' with P(x, x') > 0, row by row), so no dense S×S array is
# needed. ``_dcfp_triplets_csr`` visits the same (x, x', j, i) in the same order with the same
# arithmetic as ``_dcfp_triplets``, so both build the identical A and b.


@njit(cache=True)
def _dcfp_triplet_count_csr(indptr, indices, prob, reward, gamma, atoms):
    """Number of structural non-zeros of A (``_dcfp_triplets_csr``)."""
    S = indptr.shape[0] - 1
    m = atoms.shape[0]
    count = 0
    for x in range(S):
        for e in range(indptr[x], indptr[x + 1]):
            if prob[e] == 0.0:
                continue
            r = reward[e]
            for j in range(m - 1):
                i_lo, _ = _locate(atoms, r + gamma * atoms[j])
                i_hi, _ = _locate(atoms, r + gamma * atoms[j + 1])
                count += i_hi - i_lo + 1
    return count


@njit(cache=True)
def _dcfp_triplets_csr(indptr, indices, prob, reward, gamma, atoms, rows, cols, vals, b):
    """``_dcfp_triplets`` on CSR transitions: COO triplets of A and b of F = A F + b."""
    S = indptr.shape[0] - 1
    m = atoms.shape[0]
    k = 0
    for x in range(S):
        for e in range(indptr[x], indptr[x + 1]):
            p = prob[e]
            if p == 0.0:
                continue
            xn = indices[e]
            r = reward[e]
            for j in range(m - 1):
                y_lo = r + gamma * atoms[j]
                y_hi = r + gamma * atoms[j + 1]
                i_lo, _ = _locate(atoms, y_lo)
                i_hi, _ = _locate(atoms, y_hi)
                for i in range(i_lo, i_hi + 1):
                    rows[k] = x * (m - 1) + i
                    cols[k] = xn * (m - 1) + j
                    vals[k] = p * (_projected_cdf_at(atoms, i, y_lo) - _projected_cdf_at(atoms, i, y_hi))
                    k += 1
            y_top = r + gamma * atoms[m - 1]
            for i in range(m - 1):
                b[x * (m - 1) + i] += p * _projected_cdf_at(atoms, i, y_top)
    return k


@njit(cache=True)
def _cdp_operator_run(indptr, indices, data, b, F0, gaps, n_states, iterations, tol, every):
    """CDP on the precomputed DCFP operator: F_{k+1} = A F_k + b in CDF coordinates.

    A (CSR: indptr, indices, data) and b are the DCFP system of ``_dcfp_triplets(_csr)``; F holds
    F_x(z_i) for i < M − 1 at x·(M − 1) + i (the last CDF coordinate is 1 for a distribution, so
    this is exactly η ← Π_C T η on distributions, with the binary searches and projections done
    once when A was built). The stopping rule and records are those of ``_cdp_run``: the sup over
    states of the Cramér distance √(Σ_i (ΔF_x(z_i))² (z_{i+1} − z_i)) between successive iterates,
    which in CDF coordinates needs no cumulative sum. gaps: [M − 1]. Returns
    (F [S·(M−1)], steps done, recorded iterations [C], recorded changes [C]).
    """
    n = F0.shape[0]
    width = gaps.shape[0]
    current = F0.copy()
    nxt = np.empty(n)
    cap = iterations // every + 2
    rec_it = np.zeros(cap, dtype=np.int64)
    rec_ch = np.zeros(cap)
    c = 0
    done = 0
    for t in range(iterations):
        worst = 0.0
        for x in range(n_states):
            acc = 0.0
            base = x * width
            for i in range(width):
                row = base + i
                v = b[row]
                for e in range(indptr[row], indptr[row + 1]):
                    v += data[e] * current[indices[e]]
                nxt[row] = v
                d = v - current[row]
                acc += d * d * gaps[i]
            if acc > worst:
                worst = acc
        change = np.sqrt(worst)
        tmp = current
        current = nxt
        nxt = tmp
        done = t + 1
        stop = tol > 0.0 and change <= tol
        if done % every == 0 or stop or done == iterations:
            rec_it[c] = done
            rec_ch[c] = change
            c += 1
        if stop:
            break
    return current, done, rec_it[:c].copy(), rec_ch[:c].copy()


# --- a fill-reducing ordering of the DCFP system from its product structure ------------------------


@njit(cache=True)
def _atom_band(indptr, indices, width):
    """max |i − j| over the non-zeros of A at (x·width + i, x'·width + j): how far in atom index one
    unknown's equation reaches."""
    band = 0
    for row in range(indptr.shape[0] - 1):
        i = row % width
        for e in range(indptr[row], indptr[row + 1]):
            d = abs(indices[e] % width - i)
            if d > band:
                band = d
    return band


@njit(cache=True)
def _nested_dissection(level_ptr, level_states, roots, width, band, leaf, out):
    """Nested dissection of the grid (state level × atom) into ``out`` [S·width] (elimination order:
    out[k] = the unknown eliminated k-th; unknown x·width + i).

    The unknowns form a product: the state graph (levels = breadth-first level sets, so an edge
    joins a level only to itself or a neighbouring level; ``level_states[level_ptr[l]:
    level_ptr[l + 1]]`` are the states of level l) times the atom index, where an equation reaches
    at most ``band`` atoms away. A box of levels [l0, l1) × atoms [a0, a1) is split by the smaller
    of two separators, every state of the middle level × the box's atoms, or ``band`` consecutive
    atoms × the box's states; the two halves are ordered first, the separator last (George 1973,
    "Nested dissection of a regular finite element mesh", SIAM J. Numer. Anal. 10(2)). Boxes of at
    most ``leaf`` unknowns are not split. ``roots`` [C, 2]: level ranges of the connected components.
    Filled from the back by a pre-order walk (separator, then the halves), which gives the
    post-order halves-then-separator without recursion.
    """
    stack = np.empty((4 * (level_ptr.shape[0] + width) + 64 + 4 * roots.shape[0], 4), dtype=np.int64)
    top = 0
    for c in range(roots.shape[0]):
        stack[top, 0] = roots[c, 0]
        stack[top, 1] = roots[c, 1]
        stack[top, 2] = 0
        stack[top, 3] = width
        top += 1
    pos = out.shape[0]
    while top > 0:
        top -= 1
        l0 = stack[top, 0]
        l1 = stack[top, 1]
        a0 = stack[top, 2]
        a1 = stack[top, 3]
        states = level_ptr[l1] - level_ptr[l0]
        atoms = a1 - a0
        if states == 0 or atoms == 0:
            continue
        kind = 0  # 0: leaf, 1: cut a level, 2: cut atoms
        best = states * atoms
        if states * atoms > leaf:
            if l1 - l0 >= 3:
                lm = (l0 + l1) // 2
                size = (level_ptr[lm + 1] - level_ptr[lm]) * atoms
                if size < best:
                    best = size
                    kind = 1
            if atoms >= 2 * band + 3:
                size = states * band
                if size < best:
                    best = size
                    kind = 2
        if kind == 0:
            s0, s1, c0, c1 = l0, l1, a0, a1
        elif kind == 1:
            lm = (l0 + l1) // 2
            s0, s1, c0, c1 = lm, lm + 1, a0, a1
        else:
            am = (a0 + a1 - band) // 2
            s0, s1, c0, c1 = l0, l1, am, am + band
        for k in range(level_ptr[s1] - 1, level_ptr[s0] - 1, -1):  # the separator (or leaf) last
            x = level_states[k]
            for i in range(c1 - 1, c0 - 1, -1):
                pos -= 1
                out[pos] = x * width + i
        if kind == 1:
            stack[top] = (l0, lm, a0, a1)
            stack[top + 1] = (lm + 1, l1, a0, a1)
            top += 2
        elif kind == 2:
            stack[top] = (l0, l1, a0, am)
            stack[top + 1] = (l0, l1, am + band, a1)
            top += 2
    return pos
