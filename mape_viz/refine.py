"""Layer-wise greedy swap refinement of a module mask (paper Eq. 9, docs/design.md §4) — pure math.

One layer, one kind (heads or filters), ``n`` modules. ``frozen`` is the set P (mask 0),
its complement U is selected; ``|P|`` never changes. The cost to minimise is

    cost(P) = Σ_{i∈P} g_i + ½ · 1_Pᵀ F 1_P

and swapping ``i ∈ P`` (enters the selection) with ``j ∈ U`` (becomes frozen) changes it by

    Δ(i, j) = g_j − g_i + (v_j − v_i) + ½(F_ii + F_jj) − F_ij,     v = F 1_P.

**Maximising** (objective ``mlf-argmax``, Eq. 17/18 read as written): the same cost is
maximised instead. The functions take ``maximize=True`` and solve the mirrored problem — minimise
``−cost``, i.e. ``g → −g``, ``F → −F``, and visit candidates in *ascending* score — so the
greedy, its pruning bound (which only needs ``|F_ij| ≤ √|F_ii| √|F_jj|``, true for ±a Gram
matrix) and the exact search are the same code. Costs and swap deltas are always reported in the
original sign (``layer_cost``), so an improving swap has Δ < 0 when minimising and Δ > 0 when
maximising.

The Fisher block ``F`` is given in one of three forms (argument ``fisher``):

* ``(n,)``   — its diagonal only (no factor kept: the off-diagonal is zero);
* ``(n, n)`` — the formed block ``F``;
* ``(N, n)`` together with ``n_fisher`` — the low-rank factor ``G`` (per-sample mask gradients),
  ``F = Gᵀ G / n_fisher``. This is how :func:`mape_viz.selection.select_modules` calls it.

Everything runs in float64 (inputs may be float32 tensors or arrays): the greedy compares many
near-equal numbers, and single precision would make its decisions depend on rounding. Vectors
live in NumPy (low per-call overhead); the matrix products of the low-rank backend go through
torch on zero-copy views, single-threaded (:func:`one_thread`).

Speed. A naive greedy forms ``F`` (``n²N`` flops, 970 MB per Llama-2-7B FFN layer) and loops in
Python over candidates. :func:`greedy_swap` never forms ``F`` for big layers: it keeps the
selected set's factor rows ``G_U`` and ``F_UU`` (k×k), and prices a whole *block* of upcoming
candidates at once (``Δ = a − b − F[I, U]``, one matmul). Between swaps the candidates' rows are
independent, so it takes the first row with an improving swap, applies it with O(k + m·N)
incremental updates, and continues from the next row. Rows that a Cauchy–Schwarz bound shows
cannot improve are skipped without their matmul row (see :func:`_greedy_round`). The result is
the same decisions, in the same order, as the sequential greedy
(``tests/naive_greedy.py`` holds the slow, obviously-correct twin that the tests and
``benchmarks/bench_refine.py`` compare it with, swap for swap).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

#: A swap must lower the cost by more than ``REL_TOL × scale`` to count as improving, where
#: ``scale = max|g| + |P| · max F_ii`` bounds the size of any Δ. This keeps float64 round-off
#: (≈1e-16 · scale per operation) from creating swaps that only trade rounding noise.
REL_TOL = 1e-10

#: Safety cap for ``rounds=None`` ("until no improving swap"). Every swap lowers the cost by
#: more than the tolerance, so the search terminates anyway; the cap only bounds run time.
MAX_ROUNDS = 1000

#: Layers with at most this many modules form ``F`` (n×n) directly; bigger ones keep the factor.
DENSE_MAX = 1024

#: Upper bound on the number of subsets :func:`exact_frozen` will enumerate.
EXACT_MAX_SUBSETS = 200_000

ENGINES = ("auto", "dense", "lowrank")


# ---------------------------------------------------------------------------------------------
# Input conversion


def _np64(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _bool1d(x: ArrayLike, n: int, name: str = "frozen") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name} must be boolean (or 0/1), got values other than 0 and 1")
        arr = arr.astype(bool)
    return arr.copy()


# ---------------------------------------------------------------------------------------------
# Fisher backends: the three forms of F behind one small interface used by the greedy.
#
#   d                 (n,) diagonal F_ii
#   gather(idx)       a "handle" for rows idx (factor rows for low-rank, the indices otherwise);
#                     handles can be sliced and have rows assigned, like arrays
#   row(i)            the handle row of module i (to assign into a handle)
#   cross(hA, hB)     F[A][:, B]
#   cols(hA, i, j)    (F[A, i], F[A, j])
#   psd               True when F is known to be ± a Gram matrix (|F_ij| ≤ √|F_ii F_jj|):
#                     enables the pruning bound
#   start(frozen)     set the frozen set P whose v = F 1_P is tracked
#   v_at(h)           v[A] for the current P
#   swap(i, j)        i leaves P, j joins P
#   cost(g, frozen)   the layer cost of a frozen set


class _DiagFisher:
    """F = diag(d): no off-diagonal terms (no factor was kept)."""

    kind = "diag"
    psd = True

    def __init__(self, d: np.ndarray) -> None:
        self.d = d
        self.n = d.shape[0]
        self._inP = np.zeros(self.n, dtype=bool)

    def gather(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(idx, dtype=np.int64).copy()

    def row(self, i: int) -> int:
        return i

    def cross(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a[:, None] == b[None, :]) * self.d[a][:, None]

    def cols(self, a: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        return (a == i) * self.d[i], (a == j) * self.d[j]

    def start(self, frozen: np.ndarray) -> None:
        self._inP = frozen.copy()

    def v_at(self, a: np.ndarray) -> np.ndarray:
        return self.d[a] * self._inP[a]

    def swap(self, i: int, j: int) -> None:
        self._inP[i] = False
        self._inP[j] = True

    def cost(self, g: np.ndarray, frozen: np.ndarray) -> float:
        p = frozen.astype(np.float64)
        return float(g @ p + 0.5 * (self.d @ p))


class _DenseFisher:
    """The formed n×n block F (small layers: cheap, and O(n) updates of v per swap).

    When F came from a factor, ``Gt``/``c`` are kept so that :meth:`cost` prices sets with the
    same formula as the low-rank backend and :func:`layer_cost` (equal sets, equal floats).
    """

    kind = "dense"

    def __init__(self, F: np.ndarray, Gt: np.ndarray | None = None, c: float = 1.0) -> None:
        self.F = F
        self.d = _check_diag(np.diag(F).copy())
        self.n = F.shape[0]
        self._Gt, self._c = Gt, c
        self.psd = Gt is not None  # ± a Gram matrix; a user-formed F may not be
        self._v = np.zeros(self.n)

    def gather(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(idx, dtype=np.int64).copy()

    def row(self, i: int) -> int:
        return i

    def cross(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.F[np.ix_(a, b)]

    def cols(self, a: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        return self.F[i, a], self.F[j, a]  # F is symmetric: row reads are contiguous

    def start(self, frozen: np.ndarray) -> None:
        self._v = self.F @ frozen.astype(np.float64)

    def v_at(self, a: np.ndarray) -> np.ndarray:
        return self._v[a]

    def swap(self, i: int, j: int) -> None:
        self._v += self.F[j]
        self._v -= self.F[i]

    def cost(self, g: np.ndarray, frozen: np.ndarray) -> float:
        if self._Gt is not None:
            return _factor_cost(self._Gt, self._c, g, frozen)
        p = frozen.astype(np.float64)
        return float(g @ p + 0.5 * (p @ self.F @ p))


def _factor_cost(Gt: np.ndarray, c: float, g: np.ndarray, frozen: np.ndarray) -> float:
    """g·1_P + ½ c ‖Gtᵀ 1_P‖² — the cost from the factor rows Gt (n, N), in O(nN)."""
    s = torch.mv(torch.from_numpy(Gt).T, torch.from_numpy(frozen.astype(np.float64))).numpy()
    return float(g @ frozen.astype(np.float64) + 0.5 * c * (s @ s))


class _LowRankFisher:
    """F = Gᵀ G · c with the factor kept as rows ``Gt = Gᵀ`` (n, N); F itself is never formed.

    v = F 1_P = Gt · s · c with s = Σ_{k∈P} Gt[k] (N,), so tracking P costs O(N) per swap.
    Handles are float64 arrays of factor rows. Matrix products go through torch (zero-copy
    views), which :func:`greedy_swap` runs single-threaded — see :func:`one_thread`.
    """

    kind = "lowrank"
    psd = True

    def __init__(self, Gt: np.ndarray, c: float) -> None:
        self.Gt = Gt
        self.c = c
        self.n = Gt.shape[0]
        self.d = _check_diag(np.einsum("ij,ij->i", Gt, Gt) * c)
        self._s = np.zeros(Gt.shape[1])

    def gather(self, idx: np.ndarray) -> np.ndarray:
        return self.Gt[idx]

    def row(self, i: int) -> np.ndarray:
        return self.Gt[i]

    def cross(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = torch.mm(torch.from_numpy(a), torch.from_numpy(b).T).numpy()
        out *= self.c
        return out

    def cols(self, a: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        out = torch.mm(torch.from_numpy(a), torch.from_numpy(self.Gt[[i, j]]).T).numpy()
        out *= self.c
        return out[:, 0], out[:, 1]

    def start(self, frozen: np.ndarray) -> None:
        # Gtᵀ 1_P as a matvec: cheaper than gathering the |P| rows and summing them.
        self._s = torch.mv(torch.from_numpy(self.Gt).T, torch.from_numpy(frozen.astype(np.float64))).numpy()

    def v_at(self, a: np.ndarray) -> np.ndarray:
        out = torch.mv(torch.from_numpy(a), torch.from_numpy(self._s)).numpy()
        out *= self.c
        return out

    def swap(self, i: int, j: int) -> None:
        self._s += self.Gt[j]
        self._s -= self.Gt[i]

    def cost(self, g: np.ndarray, frozen: np.ndarray) -> float:
        return _factor_cost(self.Gt, self.c, g, frozen)


_Backend = _DiagFisher | _DenseFisher | _LowRankFisher


def _backend(fisher: ArrayLike, n: int, n_fisher: float | None, engine: str = "auto",
             sign: float = 1.0) -> _Backend:
    """Build the Fisher backend for a layer of ``n`` modules (see the module docstring);
    ``sign=-1`` gives the backend of ``−F`` (the mirrored problem of a maximisation)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    shape = tuple(fisher.shape)
    if len(shape) == 1:
        if shape != (n,):
            raise ValueError(f"diagonal fisher must have shape ({n},), got {shape}")
        return _DiagFisher(sign * _np64(fisher, "fisher"))
    if len(shape) != 2 or shape[1] != n:
        raise ValueError(f"fisher must be (n,) diagonal, (n, n) block or (N, n) factor with n={n}, got {shape}")
    if n_fisher is None:
        if shape != (n, n):
            raise ValueError(f"a formed fisher block must be ({n}, {n}); for an (N, n) factor pass n_fisher")
        return _DenseFisher(sign * _np64(fisher, "fisher"))
    if isinstance(n_fisher, bool) or not (isinstance(n_fisher, (int, float, np.integer, np.floating)) and n_fisher > 0):
        raise ValueError(f"n_fisher must be a positive number, got {n_fisher!r}")
    c = sign / float(n_fisher)
    Gt = _rows64(fisher)
    if engine == "dense" or (engine == "auto" and n <= DENSE_MAX):
        t = torch.from_numpy(Gt)
        return _DenseFisher(torch.mm(t, t.T).mul_(c).numpy(), Gt, c)
    return _LowRankFisher(Gt, c)


def _rows64(factor: ArrayLike) -> np.ndarray:
    """(N, n) factor -> contiguous float64 (n, N) rows, in one copy (no float64 intermediate)."""
    t = factor if isinstance(factor, torch.Tensor) else torch.from_numpy(np.asarray(factor))
    t = t.detach().cpu()
    out = torch.empty((t.shape[1], t.shape[0]), dtype=torch.float64)
    out.copy_(t.T)
    return out.numpy()


def _check_diag(d: np.ndarray) -> np.ndarray:
    """Reject a non-finite Fisher by its diagonal: a NaN/inf anywhere in a factor column makes
    that column's F_ii non-finite, so this O(n) check replaces a pass over the factor."""
    if not np.all(np.isfinite(d)):
        raise ValueError("fisher contains NaN or infinite values (or overflows in F_ii)")
    return d


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels single-threaded inside the block, restoring the setting after.

    The greedy issues thousands of small and medium matrix products between Python steps.
    Threaded BLAS gains little on those, and when the CPU is shared (another process on one
    of two cores) its thread barriers stall: measured 10–25× slower than one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tolerance(g: np.ndarray, d: np.ndarray, n_frozen: int) -> float:
    scale = (float(np.abs(g).max()) if g.size else 0.0) + n_frozen * (float(np.abs(d).max()) if d.size else 0.0)
    return REL_TOL * scale


# ---------------------------------------------------------------------------------------------
# Cost and Δ, for recomputation by tests and figures


def layer_cost(g: ArrayLike, fisher: ArrayLike, frozen: ArrayLike, n_fisher: float | None = None) -> float:
    """Layer cost ``Σ_{i∈P} g_i + ½ 1_Pᵀ F 1_P`` of the frozen set P (Eq. 9, minimised).

    Args:
        g: (n,) gradient term of the layer.
        fisher: (n,) diagonal, (n, n) formed block, or (N, n) factor when ``n_fisher`` is given.
        frozen: (n,) bool, True = frozen (mask 0).
        n_fisher: the Fisher mean's sample count; only with a factor.
    """
    g64 = _np64(g, "g").reshape(-1)
    n = g64.shape[0]
    return _backend(fisher, n, n_fisher, engine="auto" if n_fisher is None else "lowrank").cost(g64, _bool1d(frozen, n))


def swap_delta(
    g: ArrayLike, fisher: ArrayLike, frozen: ArrayLike, i: int, j: int, n_fisher: float | None = None
) -> float:
    """Δ(i, j): cost change of letting frozen ``i`` enter the selection and selected ``j`` leave.

    Same argument conventions as :func:`layer_cost`; uses the O(1)-after-v formula
    ``g_j − g_i + (v_j − v_i) + ½(F_ii + F_jj) − F_ij``.
    """
    g64 = _np64(g, "g").reshape(-1)
    n = g64.shape[0]
    fr = _bool1d(frozen, n)
    if not (0 <= i < n and fr[i] and 0 <= j < n and not fr[j]):
        raise ValueError(f"swap_delta needs i frozen and j selected (indices in [0, {n})), got i={i}, j={j}")
    be = _backend(fisher, n, n_fisher)
    be.start(fr)
    h = be.gather(np.array([i, j]))
    v_i, v_j = be.v_at(h)
    F_ij = float(be.cross(h[:1], h[1:])[0, 0])
    return float(g64[j] - g64[i] + (v_j - v_i) + 0.5 * (be.d[i] + be.d[j]) - F_ij)


def _formed(fisher: ArrayLike, n: int, n_fisher: float | None) -> np.ndarray:
    """The n×n block F from any of the three forms (for the reference and exact solvers)."""
    arr = _np64(fisher, "fisher")
    if arr.ndim == 1:
        F = np.diag(arr)
    elif n_fisher is not None:
        t = torch.from_numpy(arr)
        F = torch.mm(t.T, t).div_(float(n_fisher)).numpy()
    else:
        F = arr
    if F.shape != (n, n):
        raise ValueError(f"fisher of shape {arr.shape} does not give an ({n}, {n}) block")
    return F


# ---------------------------------------------------------------------------------------------
# The greedy


@dataclass
class LayerResult:
    """Outcome of refining one layer.

    Attributes:
        frozen: (n,) bool, the final frozen set.
        swaps: ``(entered, left, delta, round)`` per swap, in order.
        cost_before / cost_after: layer cost of the starting and the final frozen set.
        rounds: rounds run (the last one made no swap when ``converged``).
        converged: True when the last round found no improving swap.
        engine: which Fisher backend ran (``diag``, ``dense``, ``lowrank``).
    """

    frozen: np.ndarray
    swaps: list[tuple[int, int, float, int]] = field(default_factory=list)
    cost_before: float = 0.0
    cost_after: float = 0.0
    rounds: int = 0
    converged: bool = False
    engine: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _visit_order(score: np.ndarray, frozen: np.ndarray) -> np.ndarray:
    """Frozen modules in descending score; ties: lower index first (stable sort)."""
    idx = np.flatnonzero(frozen)
    return idx[np.argsort(-score[idx], kind="stable")]


class _Selected:
    """The selected set U and what the greedy keeps about it, carried from round to round.

    ``U`` (k,) module indices in column order (not sorted after swaps); ``hU`` their backend
    handle; ``F_UU`` (k, k) = F[U, U]; ``base_U`` = (g + ½d)[U]; ``sqrt_dU`` = √d[U].
    """

    def __init__(self, be: _Backend, g: np.ndarray, frozen: np.ndarray) -> None:
        self.U = np.flatnonzero(~frozen)
        self.hU = be.gather(self.U)
        # F_UU is kept so that F[U, j] of a leaving j is a row lookup, not a matvec; its
        # entries are copied from freshly computed products, so it does not drift.
        self.F_UU = be.cross(self.hU, self.hU)
        self.base_U = g[self.U] + 0.5 * be.d[self.U]
        self.sqrt_d = np.sqrt(np.abs(be.d))  # |d|: the mirrored problem of a maximisation has d ≤ 0
        self.sqrt_dU = self.sqrt_d[self.U]


def _greedy_round(
    be: _Backend,
    g: np.ndarray,
    score: np.ndarray,
    frozen: np.ndarray,
    tol: float,
    rnd: int,
    swaps: list[tuple[int, int, float, int]],
    block: int,
    sel: _Selected,
) -> int:
    """One round of the sequential greedy, evaluated a block of candidates at a time.

    Candidates are visited in order; for each block of ``m`` of them, only rows that *can*
    improve get their ``F[I, U]`` row computed. Cauchy–Schwarz (F is ± a Gram matrix) gives
    ``F_ij ≤ √|F_ii| √|F_jj|``, hence ``min_j Δ(i, j) ≥ min(aU) − √|F_ii| · max √|dU| − b_i``; a row
    whose bound is ≥ −tol/2 cannot swap while the state is unchanged (the ½ leaves a margin far
    above rounding), and every swap re-checks the bound of the rows still ahead. After the
    warm start's first few hundred swaps, ~75–90 % of rows are skipped this way (measured on
    random BERT/Llama-shaped problems), which is most of the matmul work.

    Mutates ``frozen`` and appends to ``swaps``; returns the number of swaps made.
    """
    order = _visit_order(score, frozen)
    U, hU, F_UU, base_U, sqrt_dU = sel.U, sel.hU, sel.F_UU, sel.base_U, sel.sqrt_dU  # updated in place
    k = U.shape[0]
    if k == 0 or order.shape[0] == 0:
        return 0
    d = be.d
    sqrt_d = sel.sqrt_d
    be.start(frozen)
    prune = be.psd
    n_swaps = 0
    p = 0
    m = block
    while p < order.shape[0]:
        I = order[p : p + m]
        p += I.shape[0]
        hI = be.gather(I)
        # Δ[r, c] = aU[c] − bI[r] − F[I_r, U_c] with aU = (g + v + ½d)[U], bI = (g + v − ½d)[I].
        # Both are exact at the block start and updated incrementally within it.
        aU = base_U + be.v_at(hU)
        bI = g[I] - 0.5 * d[I] + be.v_at(hI)
        F_IU = np.empty((I.shape[0], k))
        have = np.zeros(I.shape[0], dtype=bool)  # rows whose F[I_r, U] is computed and current
        todo = np.arange(I.shape[0])
        pos = 0
        swapped_here = 0
        while True:
            # Rows ahead that might improve get their F row (one matmul for all of them).
            if prune:
                lb = aU.min() - sqrt_d[I[todo]] * sqrt_dU.max() - bI[todo]
                todo = todo[lb < -0.5 * tol]
            if todo.size:
                F_IU[todo] = be.cross(hI[todo], hU)
                have[todo] = True
            rows = pos + np.flatnonzero(have[pos:])
            if rows.size == 0:
                break
            delta = aU - F_IU[rows]
            delta -= bI[rows, None]
            row_min = delta.min(axis=1)
            q = int(np.argmax(row_min < -tol))
            if not row_min[q] < -tol:
                break
            r, row = int(rows[q]), delta[q]
            c = int(np.argmin(row))
            if np.count_nonzero(row == row[c]) > 1:  # exact tie: lowest module index wins
                ties = np.flatnonzero(row == row[c])
                c = int(ties[np.argmin(U[ties])])
            i, j = int(I[r]), int(U[c])
            swaps.append((i, j, float(row[c]), rnd))
            n_swaps += 1
            swapped_here += 1
            # i takes column c of U, j joins P; v changes by F[:, j] − F[:, i].
            Fi_U = F_IU[r].copy()  # F[i, U_old]
            a_i = bI[r] + Fi_U[c]  # g_i + (v_i + F_ij − F_ii) + ½F_ii: i's new entry of aU
            aU += F_UU[c]  # F_UU is symmetric: row c = F[U, j]
            aU -= Fi_U
            aU[c] = a_i
            base_U[c] = g[i] + 0.5 * d[i]
            sqrt_dU[c] = sqrt_d[i]
            Fi_U[c] = d[i]  # now F[U_new, i]
            F_UU[:, c] = Fi_U
            F_UU[c] = Fi_U
            hU[c] = be.row(i)
            U[c] = i
            frozen[i], frozen[j] = False, True
            be.swap(i, j)
            # Rows ahead: v and column c of F[I, U] change; rows without an F row are re-checked.
            pos = r + 1
            if pos == I.shape[0]:
                break
            Fi_rest, Fj_rest = be.cols(hI[pos:], i, j)
            bI[pos:] += Fj_rest - Fi_rest
            F_IU[pos:, c] = Fi_rest
            todo = pos + np.flatnonzero(~have[pos:])
        # Big blocks when swaps are rare (fewer, larger matmuls); small when they are frequent
        # (each swap updates the rest of its block, O(rest · (k + N))).
        m = max(min(16, block), m // 2) if swapped_here else min(4 * block, m * 2)
    return n_swaps


def greedy_swap(
    g: ArrayLike,
    fisher: ArrayLike,
    frozen: ArrayLike,
    score: ArrayLike,
    n_fisher: float | None = None,
    rounds: int | None = 1,
    engine: str = "auto",
    block: int = 64,
    maximize: bool = False,
) -> LayerResult:
    """Greedy swap refinement of one layer (fast, block-evaluated).

    Args:
        g: (n,) gradient term.
        fisher: (n,) diagonal, (n, n) block, or (N, n) factor with ``n_fisher``.
        frozen: (n,) bool warm start, True = frozen.
        score: (n,) importance score; each round visits the frozen modules in descending score
            (ascending with ``maximize``).
        n_fisher: sample count of the Fisher mean (factor form only).
        rounds: 1 = the paper's single round; ``None`` = until a round makes no swap
            (capped at :data:`MAX_ROUNDS`, with a warning if hit).
        engine: ``auto`` (dense F for n ≤ :data:`DENSE_MAX`, else low-rank), ``dense``,
            ``lowrank`` (the last two only matter for a factor).
        block: candidates per block at the start; it adapts between ``min(16, block)`` (swaps
            frequent) and ``4 × block`` (swaps rare). Affects speed only, never the result.
        maximize: maximise the layer cost instead (Eq. 18 as written, objective
            ``mlf-argmax``): a swap is made when it *raises* the cost.

    Returns:
        :class:`LayerResult` (swaps as ``(entered, left, delta, round)``; costs and deltas
        in the sign of :func:`layer_cost`, so improving deltas are > 0 with ``maximize``).
    """
    g64 = _np64(g, "g").reshape(-1)
    n = g64.shape[0]
    fr = _bool1d(frozen, n)
    sc = _np64(score, "score").reshape(-1)
    if sc.shape != (n,):
        raise ValueError(f"score must have shape ({n},), got {sc.shape}")
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1):
        raise ValueError(f"rounds must be a positive int or None, got {rounds!r}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    # maximising = minimising the mirrored problem (module docstring); report in the original sign
    sign = -1.0 if maximize else 1.0
    g64, sc = sign * g64, sign * sc
    with one_thread():
        be = _backend(fisher, n, n_fisher, engine, sign=sign)
        tol = _tolerance(g64, be.d, int(fr.sum()))
        res = LayerResult(frozen=fr, engine=be.kind, cost_before=sign * be.cost(g64, fr))
        limit = MAX_ROUNDS if rounds is None else int(rounds)
        sel = _Selected(be, g64, fr)
        for rnd in range(limit):
            made = _greedy_round(be, g64, sc, fr, tol, rnd, res.swaps, block, sel)
            res.rounds = rnd + 1
            if made == 0:
                res.converged = True
                break
        else:
            if rounds is None:
                warnings.warn(
                    f"greedy swap stopped after MAX_ROUNDS={MAX_ROUNDS} rounds without converging",
                    RuntimeWarning,
                    stacklevel=2,
                )
        res.cost_after = sign * be.cost(g64, fr)
    if maximize:
        res.swaps = [(i, j, -d, r) for i, j, d, r in res.swaps]
    res.meta["tol"] = tol
    return res


# ---------------------------------------------------------------------------------------------
# Exact solver (small layers, e.g. heads)


def exact_frozen(
    g: ArrayLike, fisher: ArrayLike, n_frozen: int, n_fisher: float | None = None,
    maximize: bool = False,
) -> tuple[np.ndarray, float]:
    """The frozen set of size ``n_frozen`` with the lowest layer cost (the highest with
    ``maximize``), by enumeration.

    Enumerates all ``C(n, n_frozen)`` subsets (at most :data:`EXACT_MAX_SUBSETS`, else
    ValueError). Ties go to the first subset in ``itertools.combinations`` order.

    Returns:
        ``(frozen (n,) bool, cost)``.
    """
    g64 = _np64(g, "g").reshape(-1)
    n = g64.shape[0]
    F = _formed(fisher, n, n_fisher)
    if not 0 <= n_frozen <= n:
        raise ValueError(f"n_frozen must be in [0, {n}], got {n_frozen}")
    total = math.comb(n, n_frozen)
    if total > EXACT_MAX_SUBSETS:
        raise ValueError(
            f"exact search would enumerate C({n}, {n_frozen}) = {total} subsets, more than "
            f"EXACT_MAX_SUBSETS={EXACT_MAX_SUBSETS}; use refine='converge' for layers this large"
        )
    combos = np.array(list(itertools.combinations(range(n), n_frozen)), dtype=np.int64).reshape(total, n_frozen)
    X = np.zeros((total, n))
    np.put_along_axis(X, combos, 1.0, axis=1)
    costs = X @ g64 + 0.5 * np.einsum("si,ij,sj->s", X, F, X)
    best = int(np.argmax(costs) if maximize else np.argmin(costs))
    fr = X[best].astype(bool)
    return fr, float(g64[fr].sum() + 0.5 * F[np.ix_(fr, fr)].sum())


def swaps_between(
    g: ArrayLike,
    fisher: ArrayLike,
    start: ArrayLike,
    target: ArrayLike,
    n_fisher: float | None = None,
    rnd: int = 0,
) -> list[tuple[int, int, float, int]]:
    """Pair up the modules that differ between two frozen sets of equal size as swaps.

    Entering modules (frozen in ``start``, not in ``target``) and leaving ones are paired in
    ascending index order; each swap's ``delta`` is its cost change when the swaps are replayed
    in order from ``start``, so replaying them reaches ``target`` with the recorded deltas.
    """
    g64 = _np64(g, "g").reshape(-1)
    n = g64.shape[0]
    fr = _bool1d(start, n, "start")
    tg = _bool1d(target, n, "target")
    enter = np.flatnonzero(fr & ~tg)
    leave = np.flatnonzero(~fr & tg)
    if enter.size != leave.size:
        raise ValueError("start and target must freeze the same number of modules")
    be = _backend(fisher, n, n_fisher)
    out = []
    for i, j in zip(enter.tolist(), leave.tolist()):
        be.start(fr)
        h = be.gather(np.array([i, j]))
        v_i, v_j = be.v_at(h)
        delta = g64[j] - g64[i] + (v_j - v_i) + 0.5 * (be.d[i] + be.d[j]) - be.cross(h[:1], h[1:])[0, 0]
        out.append((i, j, float(delta), rnd))
        fr[i], fr[j] = False, True
    return out
