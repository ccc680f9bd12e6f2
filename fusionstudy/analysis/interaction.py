"""Partial information decomposition (PID) of what two modalities tell about the label: how much
is redundant (either modality tells it), unique to one, or synergistic (only the two together).

The definition is Bertschinger, Rauh, Olbrich, Jost & Ay (2014, "Quantifying Unique Information",
Entropy 16), the "BROJA" PID; the estimator is the discretised ("CVX") one of Liang et al. (2023,
"Quantifying & Modeling Multimodal Interactions: An Information Decomposition Framework",
NeurIPS): discretise each modality (here: a unimodal model's predictions, :func:`discretize`),
count the joint distribution ``p(x1, x2, y)`` (:func:`joint_distribution`), and solve

    q* = argmin_{q in Delta_p} I_q(Y; X1, X2),
    Delta_p = {q : q(x1, y) = p(x1, y), q(x2, y) = p(x2, y)},

then ``R = I(Y;X1) + I(Y;X2) - I_q*(Y;X1,X2)``, ``U1 = I_q*(Y;X1,X2) - I(Y;X2)``,
``U2 = I_q*(Y;X1,X2) - I(Y;X1)``, ``S = I_p(Y;X1,X2) - I_q*(Y;X1,X2)``, all in bits; they sum to
``I_p(Y; X1, X2)``, with ``R + U1 = I(Y;X1)`` and ``R + U2 = I(Y;X2)``.

Torch-free and pure: counts in, numbers out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.linalg import null_space
from threadpoolctl import threadpool_limits

PID_TOL = 1e-10  # barrier duality gap (nats) at which the solver stops: atoms exact to ~1e-10 bits
NEWTON_MAX_STEPS = 200  # per barrier weight (a few dozen are typical)


@dataclass(frozen=True)
class PID:
    """A BROJA partial information decomposition, in bits.

    Attributes
    ----------
    redundancy, unique1, unique2, synergy : the four atoms (``unique1`` is what only ``X1`` tells).
    total : ``I_p(Y; X1, X2)``, their sum.
    mi1, mi2 : ``I(Y; X1)`` and ``I(Y; X2)``.
    newton_steps : Newton steps the solver took in all.
    """

    redundancy: float
    unique1: float
    unique2: float
    synergy: float
    total: float
    mi1: float
    mi2: float
    newton_steps: int

    def as_dict(self) -> dict:
        return asdict(self)


def _mi_bits(pab: np.ndarray) -> float:
    """Mutual information in bits of a 2-d joint distribution ``(k_a, k_b)``."""
    outer = pab.sum(axis=1, keepdims=True) * pab.sum(axis=0, keepdims=True)
    nz = pab > 0
    return float(np.sum(pab[nz] * np.log2(pab[nz] / outer[nz])))


def _mi_y_x1x2(q: np.ndarray) -> float:
    """``I_q(Y; X1, X2)`` in bits of a joint ``(k1, k2, k_y)``."""
    return _mi_bits(q.reshape(-1, q.shape[2]))


def _feasible_set(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Delta_p`` as ``q = q0 + N z``: the cells no ``q`` in ``Delta_p`` must leave empty
    (``(m,)`` flat indices, those with ``p(x1, y) > 0`` and ``p(x2, y) > 0``), a strictly positive
    member ``q0 (m,)`` on them — per ``y`` the independent coupling ``p(x1|y) p(x2|y) p(y)`` — and
    ``N (m, d)``, an orthonormal basis of the directions that keep both marginals."""
    p1y, p2y, py = p.sum(axis=1), p.sum(axis=0), p.sum(axis=(0, 1))
    q0 = np.zeros(p.shape)
    seen = py > 0
    q0[:, :, seen] = p1y[:, None, seen] * p2y[None, :, seen] / py[seen]
    cells = np.flatnonzero(q0 > 0)
    i1, i2, iy = np.unravel_index(cells, p.shape)
    k1, k2, ky = p.shape
    a = np.zeros((k1 * ky + k2 * ky, len(cells)))  # the (x1, y) and (x2, y) sums as rows
    a[i1 * ky + iy, np.arange(len(cells))] = 1.0
    a[k1 * ky + i2 * ky + iy, np.arange(len(cells))] = 1.0
    return cells, q0.ravel()[cells], null_space(a)


def _newton_step(q: np.ndarray, pair: np.ndarray, n: np.ndarray, en: np.ndarray, t: float) -> tuple[np.ndarray, float]:
    """Newton direction ``dz (d,)`` and decrement of ``t f(q) - sum log q`` at ``q = q0 + N z``,
    where ``f(q) = sum q log q - sum_{x1,x2} r log r = -H_q(Y | X1, X2)`` (nats) and ``r = q(x1, x2)``
    (``pair (m,)`` maps each cell to its ``(x1, x2)``, numbered ``0..P-1``; ``en (P, d)`` = E N, the
    directions' change of ``r``, fixed by the feasible set)."""
    r = np.bincount(pair, weights=q, minlength=len(en))
    grad = n.T @ (t * (np.log(q) - np.log(r[pair])) - 1.0 / q)
    hess = (n.T * (t / q + 1.0 / q**2)) @ n - t * (en.T / r) @ en
    dz = -np.linalg.solve(hess, grad)
    return dz, float(-grad @ dz)


def _barrier(q: np.ndarray, pair: np.ndarray, t: float) -> float:
    """``t f(q) - sum log q`` (see :func:`_newton_step`); inf outside the open feasible set."""
    if (q <= 0).any():
        return np.inf
    r = np.bincount(pair, weights=q)  # every pair holds a cell of q > 0: r > 0
    return float(t * (np.sum(q * np.log(q)) - np.sum(r * np.log(r))) - np.sum(np.log(q)))


def _line_search(q: np.ndarray, dq: np.ndarray, pair: np.ndarray, t: float, decrement: float) -> float:
    """Step along ``dq`` for the barrier of :func:`_newton_step`: at most 0.99 of the way to the
    boundary, damped ``1 / (1 + sqrt(decrement))`` far from the optimum, then Armijo backtracking.
    0 when no step decreases it beyond rounding (the barrier problem is then solved)."""
    shrink = dq < 0
    s = min(1.0, 0.99 * float(np.min(-q[shrink] / dq[shrink]))) if shrink.any() else 1.0
    if decrement > 0.25:
        s = min(s, 1.0 / (1.0 + np.sqrt(decrement)))
    now = _barrier(q, pair, t)
    while _barrier(q + s * dq, pair, t) > now - 0.25 * s * decrement:
        s /= 2
        if s < 1e-8:
            return 0.0
    return s


def min_union_information(p: np.ndarray, tol: float = PID_TOL) -> tuple[np.ndarray, int]:
    """``q* = argmin_{q in Delta_p} I_q(Y; X1, X2)``, i.e. the ``q`` with the marginals
    ``p(x1, y)``, ``p(x2, y)`` of largest ``H_q(Y | X1, X2)``.

    A convex problem (Bertschinger et al. 2014), solved by a log-barrier interior-point method
    (Boyd & Vandenberghe 2004, ch. 11): damped Newton steps in the affine coordinates of
    :func:`_feasible_set` for ``t f(q) - sum log q``, ``t`` raised twentyfold until the duality gap
    bound ``m / t`` (``m`` cells) is below ``tol`` nats. Optima on the boundary (empty cells, as
    for AND) are reached to within that gap, where iterative scaling slows to a crawl.

    Parameters
    ----------
    p : (k1, k2, k_y) joint distribution (non-negative, sums to 1).
    tol : duality gap in nats at which to stop.

    Returns ``(q* (k1, k2, k_y), Newton steps taken)``.
    """
    with threadpool_limits(1):  # tiny matrices: BLAS threads only contend for the cores
        return _solve(p, tol)


def _solve(p: np.ndarray, tol: float) -> tuple[np.ndarray, int]:
    cells, q0, n = _feasible_set(p)
    _, pair = np.unique(np.ravel_multi_index(np.unravel_index(cells, p.shape)[:2], p.shape[:2]), return_inverse=True)
    en = np.zeros((pair.max() + 1, n.shape[1]))  # E N, summed once: it does not depend on q
    np.add.at(en, pair, n)
    q, steps, t = q0.copy(), 0, 1.0
    while n.shape[1] and len(cells) / t > tol:
        for _ in range(NEWTON_MAX_STEPS):
            dz, decrement = _newton_step(q, pair, n, en, t)
            steps += 1
            s = _line_search(q, n @ dz, pair, t, decrement) if decrement > 1e-12 else 0.0
            if s == 0.0:
                break
            q = q + s * (n @ dz)
        t *= 20.0
    out = np.zeros(p.size)
    out[cells] = q
    return out.reshape(p.shape), steps


def pid(p: np.ndarray, tol: float = PID_TOL) -> PID:
    """BROJA partial information decomposition of a joint distribution ``p(x1, x2, y)``, in bits
    (Bertschinger et al. 2014; estimator as Liang et al. 2023, see the module docstring).

    Parameters
    ----------
    p : (k1, k2, k_y) joint probabilities or counts (normalised here).
    tol : the solver's duality gap in nats (see :func:`min_union_information`).

    Raises
    ------
    ValueError
        If ``p`` is not 3-d, has a negative or non-finite entry, or sums to 0.
    """
    p = np.asarray(p, dtype=float)
    if p.ndim != 3 or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"p must be a 3-d array (x1, x2, y) of non-negative finite counts with a positive "
                         f"sum, got shape {p.shape}, min {p.min() if p.size else 'n/a'}")
    p = p / p.sum()
    q, steps = min_union_information(p, tol)
    union, total = _mi_y_x1x2(q), _mi_y_x1x2(p)
    mi1, mi2 = _mi_bits(p.sum(axis=1)), _mi_bits(p.sum(axis=0))
    return PID(redundancy=mi1 + mi2 - union, unique1=union - mi2, unique2=union - mi1, synergy=total - union,
               total=total, mi1=mi1, mi2=mi2, newton_steps=steps)


def discretize(values: np.ndarray, n_bins: int = 8) -> np.ndarray:
    """Integer codes ``(n_samples,)`` of a score (e.g. a unimodal model's positive-class probability).

    With at most ``n_bins`` distinct values each value is its own code; otherwise equal-frequency
    bins at the sample quantiles, tied values always sharing a bin (so there may be fewer bins).

    Raises
    ------
    ValueError
        If ``values`` is not 1-d and finite, or ``n_bins < 2``.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or not np.isfinite(v).all() or n_bins < 2:
        raise ValueError(f"need a finite 1-d score and n_bins >= 2, got shape {v.shape}, n_bins={n_bins}")
    distinct = np.unique(v)
    if len(distinct) <= n_bins:
        return np.searchsorted(distinct, v)
    edges = np.unique(np.quantile(v, np.arange(1, n_bins) / n_bins))
    return np.searchsorted(edges, v, side="right")


def joint_distribution(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Empirical ``p(x1, x2, y)`` ``(k1, k2, k_y)`` of integer codes, each ``(n_samples,)``; the
    sizes are ``max code + 1``.

    Raises
    ------
    ValueError
        If the three have different lengths, are empty, or hold a negative code.
    """
    codes = [np.asarray(c) for c in (x1, x2, y)]
    if len({len(c) for c in codes}) != 1 or len(codes[0]) == 0 or min(int(c.min()) for c in codes) < 0:
        raise ValueError(f"x1, x2, y must be non-empty, equally long, non-negative integer codes; "
                         f"got lengths {[len(c) for c in codes]}")
    shape = tuple(int(c.max()) + 1 for c in codes)
    p = np.zeros(shape)
    np.add.at(p, tuple(c.astype(int) for c in codes), 1.0)
    return p / p.sum()
