"""Numba kernels for the NLHF family (Nash-MD, self-play MD, OMD, Nash-MP, fictitious play, Nash-MD-PG).

One kernel runs a block of iterations of one algorithm on all X contexts at once; the driver in
``fixpoint_rl.tabular.nlhf`` calls it between checkpoints and computes metrics there, so the inner
loop carries no Python overhead. Policies are kept in log space (``log_pi`` [X, K]) together with
their probabilities (``pi`` [X, K]), so each update costs one or two ``exp`` passes and one dense
P·π product per context.

These are the scalar-loop twins of ``fixpoint_rl.tabular.core.mirror.geometric_mixture_log`` and
``mirror_step_log``; ``tests/test_nlhf_algorithms.py`` ties them together (parity test).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _sync

# algorithm codes (dispatch on an int; jitted functions are never passed as arguments)
NASH_MD = 0
SELF_PLAY_MD = 1
ONLINE_MD = 2
NASH_MP = 3
FICTITIOUS_PLAY = 4
NASH_MD_PG = 5


@njit(cache=True, fastmath=True)
def _matvec(pref_x, q, out):
    """out[i] = Σ_j pref_x[i, j] q[j]  (P(y_i ≻ q)); [K, K] × [K] → [K].

    A fastmath (vectorised, single-threaded) loop: it streams the matrix once and was measured
    faster and far steadier than a BLAS call from inside the kernel at K = 1000 on a shared
    2-core machine (0.6 ms vs 1.4–24 ms for ``np.dot``), and it avoids BLAS call overhead for the
    many small matrices of contextual games.
    """
    k = q.shape[0]
    for i in range(k):
        acc = 0.0
        for j in range(k):
            acc += pref_x[i, j] * q[j]
        out[i] = acc


@njit(cache=True)
def _normalize(z, log_out, prob_out):
    """log_out = z − logsumexp(z), prob_out = exp(log_out) (one exp pass)."""
    k = z.shape[0]
    m = z[0]
    for i in range(1, k):
        if z[i] > m:
            m = z[i]
    s = 0.0
    for i in range(k):
        e = np.exp(z[i] - m)
        prob_out[i] = e
        s += e
    log_s = np.log(s)
    inv = 1.0 / s
    for i in range(k):
        log_out[i] = z[i] - m - log_s
        prob_out[i] *= inv


@njit(cache=True)
def _sample_payoff(rng, payoff, n_samples):
    """Replace P(y ≻ π') by the mean of n Bernoulli comparisons of y against y' ~ π'.

    The n outcomes are i.i.d. Bernoulli(P(y ≻ π')) (y' drawn afresh, then the outcome), so their
    sum is exactly Binomial(n, P(y ≻ π')); drawing the binomial is the same distribution.
    """
    for i in range(payoff.shape[0]):
        p = min(max(payoff[i], 0.0), 1.0)
        payoff[i] = rng.binomial(n_samples, p) / n_samples


@njit(cache=True)
def _draw(rng, probs, cdf):
    """One index from ``probs`` by inverse CDF (``cdf`` is a [K] scratch buffer)."""
    k = probs.shape[0]
    acc = 0.0
    for i in range(k):
        acc += probs[i]
        cdf[i] = acc
    u = rng.random() * acc
    for i in range(k):
        if u < cdf[i]:
            return i
    return k - 1


@njit(cache=True)
def _run_block(method, log_pi, pi, log_ref, pref, etas, tau, mixture, avg, t0, n_samples, rng):
    """Run len(etas) iterations of ``method`` in place on all contexts.

    Args:
      method: algorithm code (module constants).
      log_pi, pi: [X, K] current iterate (log-probabilities and probabilities), updated in place.
      log_ref: [X, K] log μ.
      pref: [X, K, K] preference matrices.
      etas: [T_block] step sizes (learning rates for Nash-MD-PG).
      tau: regularisation τ > 0.
      mixture: β of Nash-MD-PG's opponent (unused otherwise).
      avg: [X, K] running average of fictitious play (unused otherwise), updated in place.
      t0: number of iterations done before this block (fictitious play's averaging weight).
      n_samples: 0 for exact payoffs, else Bernoulli comparisons per response and iteration.
      rng: numpy Generator (used only when n_samples > 0).
    """
    n_ctx, k = log_pi.shape
    z = np.empty(k)
    q = np.empty(k)
    log_q = np.empty(k)
    payoff = np.empty(k)
    cdf = np.empty(k)
    grad = np.empty(k)
    for s in range(etas.shape[0]):
        eta = etas[s]
        for x in range(n_ctx):
            lp = log_pi[x]
            p = pi[x]
            lr = log_ref[x]
            px = pref[x]
            if method == NASH_MD or method == ONLINE_MD:
                b = eta * tau
                for i in range(k):
                    z[i] = (1.0 - b) * lp[i] + b * lr[i]
                _normalize(z, log_q, q)  # geometric mixture π^μ_t (NLHF §4)
                if method == NASH_MD:
                    _matvec(px, q, payoff)  # P(y ≻ π^μ_t)
                else:
                    _matvec(px, p, payoff)  # OMD plays against π_t (NLHF eqs. 7-8)
                if n_samples > 0:
                    _sample_payoff(rng, payoff, n_samples)
                if method == NASH_MD:
                    # log π_{t+1} up to a constant: the next mixture renormalises, so Nash-MD needs
                    # one exp pass per iteration; the block normalises once at its end.
                    for i in range(k):
                        lp[i] = log_q[i] + eta * payoff[i]
                else:
                    for i in range(k):
                        z[i] = log_q[i] + eta * payoff[i]
                    _normalize(z, lp, p)
            elif method == SELF_PLAY_MD:
                b = eta * tau
                _matvec(px, p, payoff)  # P(y ≻ π_t)
                if n_samples > 0:
                    _sample_payoff(rng, payoff, n_samples)
                for i in range(k):
                    z[i] = (1.0 - b) * lp[i] + b * lr[i] + eta * payoff[i]
                _normalize(z, lp, p)
            elif method == NASH_MP:
                c = 1.0 / (1.0 + eta * tau)
                _matvec(px, p, payoff)  # half step, opponent π_k
                for i in range(k):
                    z[i] = c * (eta * payoff[i] + eta * tau * lr[i] + lp[i])
                _normalize(z, log_q, q)
                _matvec(px, q, payoff)  # full step, opponent π_{k+1/2}, anchored at π_k
                for i in range(k):
                    z[i] = c * (eta * payoff[i] + eta * tau * lr[i] + lp[i])
                _normalize(z, lp, p)
            elif method == FICTITIOUS_PLAY:
                a = avg[x]
                _matvec(px, a, payoff)  # P(y ≻ π̄_t)
                for i in range(k):
                    z[i] = lr[i] + payoff[i] / tau  # regularised best response
                _normalize(z, lp, p)
                w = 1.0 / (t0 + s + 2.0)
                for i in range(k):
                    a[i] += w * (p[i] - a[i])
            else:  # NASH_MD_PG: one softmax policy-gradient step on the logits (NLHF §7)
                for i in range(k):
                    z[i] = (1.0 - mixture) * lp[i] + mixture * lr[i]
                _normalize(z, log_q, q)  # opponent π^β
                if n_samples == 0:
                    _matvec(px, q, payoff)
                    base = 0.0
                    for i in range(k):
                        payoff[i] = payoff[i] - 0.5 - tau * (lp[i] - lr[i])
                        base += p[i] * payoff[i]
                    for i in range(k):
                        grad[i] = p[i] * (payoff[i] - base)
                else:
                    # ĝ = mean of ∇ log π(y) [P(y ≻ y') − ½ − τ log(π(y)/μ(y))], y ~ π, y' ~ π^β
                    for i in range(k):
                        grad[i] = 0.0
                    total = 0.0
                    for _ in range(n_samples):
                        y = _draw(rng, p, cdf)
                        y2 = _draw(rng, q, cdf)
                        f = px[y, y2] - 0.5 - tau * (lp[y] - lr[y])
                        grad[y] += f
                        total += f
                    for i in range(k):
                        grad[i] = (grad[i] - p[i] * total) / n_samples
                for i in range(k):
                    z[i] = lp[i] + eta * grad[i]
                _normalize(z, lp, p)
    if method == NASH_MD and etas.shape[0] > 0:
        for x in range(n_ctx):
            for i in range(k):
                z[i] = log_pi[x, i]
            _normalize(z, log_pi[x], pi[x])


# --- exact-payoff blocks split over threads -------------------------------------------------------
#
# With exact payoffs the contexts never interact, so a block of T iterations can run context by
# context (all T iterations of context x, then context x + 1): the same operations on the same
# numbers in the same order as ``_run_block``, hence the same bits, but each context's K×K
# preference matrix stays in cache for the whole block instead of being streamed from memory once
# per iteration. ``_run_block_contexts`` splits the contexts over Numba's threads (prange);
# ``_run_block_rows`` (one context, large K) splits the rows of each P·π product instead. Each
# output entry is computed by one thread with the same code whatever the thread count, so the
# results are bitwise independent of it (tested). Sampled payoffs draw from one shared generator
# in a fixed order and stay in ``_run_block``.


@njit(cache=True, fastmath=True, parallel=True)
def _matvec_rows(pref_x, q, out):
    """``_matvec`` with the rows split over Numba's threads (same per-row loop)."""
    k = q.shape[0]
    for i in prange(k):
        acc = 0.0
        for j in range(k):
            acc += pref_x[i, j] * q[j]
        out[i] = acc


@njit(cache=True, inline="always")
def _product(px, v, out, split_rows):
    if split_rows:
        _matvec_rows(px, v, out)
    else:
        _matvec(px, v, out)


@njit(cache=True, inline="always")
def _context_block(method, x, log_pi, pi, log_ref, pref, etas, tau, mixture, avg, t0, z, q, log_q,
                   payoff, grad, split_rows):
    """All iterations of ``etas`` for context x with exact payoffs (``_run_block``'s update)."""
    k = log_pi.shape[1]
    lp = log_pi[x]
    p = pi[x]
    lr = log_ref[x]
    px = pref[x]
    for s in range(etas.shape[0]):
        eta = etas[s]
        if method == NASH_MD or method == ONLINE_MD:
            b = eta * tau
            for i in range(k):
                z[i] = (1.0 - b) * lp[i] + b * lr[i]
            _normalize(z, log_q, q)
            if method == NASH_MD:
                _product(px, q, payoff, split_rows)
                for i in range(k):
                    lp[i] = log_q[i] + eta * payoff[i]
            else:
                _product(px, p, payoff, split_rows)
                for i in range(k):
                    z[i] = log_q[i] + eta * payoff[i]
                _normalize(z, lp, p)
        elif method == SELF_PLAY_MD:
            b = eta * tau
            _product(px, p, payoff, split_rows)
            for i in range(k):
                z[i] = (1.0 - b) * lp[i] + b * lr[i] + eta * payoff[i]
            _normalize(z, lp, p)
        elif method == NASH_MP:
            c = 1.0 / (1.0 + eta * tau)
            _product(px, p, payoff, split_rows)
            for i in range(k):
                z[i] = c * (eta * payoff[i] + eta * tau * lr[i] + lp[i])
            _normalize(z, log_q, q)
            _product(px, q, payoff, split_rows)
            for i in range(k):
                z[i] = c * (eta * payoff[i] + eta * tau * lr[i] + lp[i])
            _normalize(z, lp, p)
        elif method == FICTITIOUS_PLAY:
            a = avg[x]
            _product(px, a, payoff, split_rows)
            for i in range(k):
                z[i] = lr[i] + payoff[i] / tau
            _normalize(z, lp, p)
            w = 1.0 / (t0 + s + 2.0)
            for i in range(k):
                a[i] += w * (p[i] - a[i])
        else:  # NASH_MD_PG, exact gradient
            for i in range(k):
                z[i] = (1.0 - mixture) * lp[i] + mixture * lr[i]
            _normalize(z, log_q, q)
            _product(px, q, payoff, split_rows)
            base = 0.0
            for i in range(k):
                payoff[i] = payoff[i] - 0.5 - tau * (lp[i] - lr[i])
                base += p[i] * payoff[i]
            for i in range(k):
                grad[i] = p[i] * (payoff[i] - base)
            for i in range(k):
                z[i] = lp[i] + eta * grad[i]
            _normalize(z, lp, p)
    if method == NASH_MD and etas.shape[0] > 0:
        for i in range(k):
            z[i] = lp[i]
        _normalize(z, lp, p)


@njit(cache=True, parallel=True)
def _run_block_contexts(method, log_pi, pi, log_ref, pref, etas, tau, mixture, avg, t0):
    """``_run_block`` with exact payoffs, context by context, contexts split over the threads."""
    n_ctx, k = log_pi.shape
    for x in prange(n_ctx):
        z = np.empty(k)
        q = np.empty(k)
        log_q = np.empty(k)
        payoff = np.empty(k)
        grad = np.empty(k)
        _context_block(method, x, log_pi, pi, log_ref, pref, etas, tau, mixture, avg, t0, z, q,
                       log_q, payoff, grad, False)


@njit(cache=True)
def _run_block_rows(method, log_pi, pi, log_ref, pref, etas, tau, mixture, avg, t0):
    """``_run_block`` with exact payoffs, context by context, each P·π product's rows split over
    the threads (``_matvec_rows``): for a few contexts with large K."""
    n_ctx, k = log_pi.shape
    z = np.empty(k)
    q = np.empty(k)
    log_q = np.empty(k)
    payoff = np.empty(k)
    grad = np.empty(k)
    for x in range(n_ctx):
        _context_block(method, x, log_pi, pi, log_ref, pref, etas, tau, mixture, avg, t0, z, q,
                       log_q, payoff, grad, True)


# --- Nash-MD on one large context: all T iterations in one pass of each thread -------------------
#
# ``_run_block_rows`` opens one Numba parallel region per P·π product, and how fast a region starts
# depends on Numba's threading layer: measured at K = 1000 (``benchmarks/perf_nlhf.py``), with the
# OpenMP layer two threads reach 67 µs per iteration, with TBB (Numba's first choice whenever the
# ``tbb`` package is installed) the second thread never joins a region this short (92 µs, the same
# as one thread). ``run_nash_md_threads`` therefore runs plain Python threads, each calling the
# nogil kernel ``_nash_md_participant`` once per block: the K rows of each iteration are cut into
# chunks that the threads claim from a shared atomic counter (``_sync.fetch_add``); a thread that
# claims a chunk of iteration t first waits until every chunk of iteration t − 1 is done (a second
# counter), then computes the geometric mixture π^μ_t itself from the shared log π_t (each thread
# the same K-vector by the same code), then its rows of P·π^μ_t and of log π_{t+1} — exactly the
# arithmetic of ``_context_block``, so the bits equal the serial kernel's whatever the thread count
# or claim order (tested). log π alternates between two buffers, so no thread overwrites a vector
# that another may still read. It cannot deadlock: a thread waits only for chunks that running
# threads have claimed, and a thread that starts late (or never) leaves its share to the others.

REGION_CHUNKS = 8


@njit(cache=True, fastmath=True)
def _rows_product(px, v, out, lo, hi):
    """out[i] = Σ_j px[i, j] v[j] for lo ≤ i < hi (``_matvec``'s per-row loop)."""
    k = v.shape[0]
    for i in range(lo, hi):
        acc = 0.0
        for j in range(k):
            acc += px[i, j] * v[j]
        out[i] = acc


@njit(cache=True)
def _nash_md_rows_update(log_next, log_q, payoff, eta, lo, hi):
    """log π_{t+1}[i] = log π^μ_t[i] + η_t P(y_i ≻ π^μ_t) for lo ≤ i < hi (unnormalised)."""
    for i in range(lo, hi):
        log_next[i] = log_q[i] + eta * payoff[i]


@njit(cache=True, nogil=True)
def _nash_md_participant(log_buffers, lr, px, etas, tau, counters, chunk_rows):
    """One thread's share of T Nash-MD iterations on one context (exact payoffs).

    log_buffers: [2, K], row t % 2 holds log π_t (row 0 = log π_0 on entry); lr: [K] log μ;
    px: [K, K]; etas: [T]; counters: int64 [16] zeros on entry ([0]: next chunk to claim,
    [8]: chunks done; 64 bytes apart); chunk_rows: rows per claim.
    """
    k = lr.shape[0]
    n_chunks = (k + chunk_rows - 1) // chunk_rows
    total = etas.shape[0] * n_chunks
    if _sync.load_acquire(counters, 0) >= total:
        return  # started after every chunk was claimed
    z = np.empty(k)
    q = np.empty(k)
    log_q = np.empty(k)
    payoff = np.empty(k)
    mixed_for = -1
    while True:
        claim = _sync.fetch_add(counters, 0, 1)
        if claim >= total:
            return
        s = claim // n_chunks
        chunk = claim - s * n_chunks
        if s != mixed_for:
            _sync.wait_until_at_least(counters, 8, s * n_chunks)
            b = etas[s] * tau
            current = log_buffers[s % 2]
            for i in range(k):
                z[i] = (1.0 - b) * current[i] + b * lr[i]
            _normalize(z, log_q, q)  # geometric mixture π^μ_t (NLHF §4)
            mixed_for = s
        lo = chunk * chunk_rows
        hi = min(k, lo + chunk_rows)
        _rows_product(px, q, payoff, lo, hi)  # P(y ≻ π^μ_t) on this chunk's rows
        _nash_md_rows_update(log_buffers[(s + 1) % 2], log_q, payoff, etas[s], lo, hi)
        _sync.fetch_add(counters, 8, 1)


@njit(cache=True)
def _nash_md_finish(log_buffers, n_iter, lp, p):
    """lp, p ← normalised log π_T, π_T from ``log_buffers[T % 2]`` (the block's last step)."""
    z = log_buffers[n_iter % 2].copy()
    _normalize(z, lp, p)


def nash_md_chunk_rows(k: int) -> int:
    """Rows per claim: REGION_CHUNKS claims per iteration (load balance), ≥ 32 rows each (counter
    traffic)."""
    return max(32, -(-k // REGION_CHUNKS))


def run_nash_md_threads(log_pi, pi, log_ref, pref, etas, tau, threads):
    """Nash-MD block (exact payoffs) on ``threads`` threads, context by context; same bits as
    ``_run_block``. log_pi, pi: [X, K] (updated in place); log_ref: [X, K]; pref: [X, K, K]."""
    import threading

    n_iter = etas.shape[0]
    if n_iter == 0:
        return
    n_ctx, k = log_pi.shape
    chunk_rows = nash_md_chunk_rows(k)
    for x in range(n_ctx):
        log_buffers = np.empty((2, k))
        log_buffers[0] = log_pi[x]
        counters = np.zeros(16, dtype=np.int64)
        args = (log_buffers, log_ref[x], pref[x], etas, tau, counters, chunk_rows)
        helpers = [threading.Thread(target=_nash_md_participant, args=args, daemon=True)
                   for _ in range(threads - 1)]
        for helper in helpers:
            helper.start()
        _nash_md_participant(*args)
        for helper in helpers:
            helper.join()
        _nash_md_finish(log_buffers, n_iter, log_pi[x], pi[x])


def nash_md_threads_compile_args(log_pi, pi, log_ref, pref, etas, tau):
    """(kernel, example arguments) pairs that ``run_nash_md_threads`` calls, for compiling them
    (or loading them from the cache) before a run's clock starts."""
    k = log_pi.shape[1]
    log_buffers = np.zeros((2, k))
    return [
        (_nash_md_participant, (log_buffers, log_ref[0], pref[0], etas[:1], tau,
                                np.zeros(16, dtype=np.int64), nash_md_chunk_rows(k))),
        (_nash_md_finish, (log_buffers, 1, log_pi[0], pi[0])),
    ]
