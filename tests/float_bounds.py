"""Float tolerances that hold on any x86-64 or ARM CPU, derived from float32 resolution.

Which comparisons need one. IEEE-754 makes +, −, ×, ÷ and sqrt correctly rounded, so an element-wise
float32 computation gives the same bits on every CPU, with two exceptions: a compiler or vector kernel
may fuse a multiply and an add (FMA, common on ARM), and transcendental functions (exp, log, sin, ...)
come from different vector libraries. Reductions (sum, mean, norm, matmul, convolution) add their terms
in an order that depends on the SIMD width, blocking and thread count, so they differ between CPUs and
between shapes (batch 2 vs batch 1) on one CPU. The test suite therefore uses two kinds of checks:

* **Bit-identical (``torch.equal``)** only where both sides run the same arithmetic on the same shapes
  in one process on one machine (a rerun, the same graph reached by another route, DiffIER switched
  off), or where the value is exact by construction (a copy, a multiplication by 0). Such a claim holds
  on every CPU, but it is a same-machine claim: it says nothing about bits across machines.
* **Near equality** wherever the two sides compute differently (a closed form vs the implementation,
  batch vs solo, a round trip): ``|actual − expected| ≤ f32_bound(scale, ops)``, see below.

The bound. Every float32 operation rounds with a relative error of at most ``u = eps_f32 / 2``
(``eps_f32 = 2^-23 ≈ 1.19e-7``); a chain of ``ops`` roundings on values no larger than ``scale`` moves
the result by at most ``ops · u · scale`` to first order, and a reordered reduction of ``n`` terms
by at most ``n · u · Σ|terms|``. Dividing by a small number ``c`` amplifies what came before by
``1 / c`` (``amplification``). :func:`f32_bound` returns ``ops · eps_f32 · scale · amplification``,
i.e. twice the first-order worst case, so it holds whatever order or fusing a CPU picks; callers
say in their docstring which ``scale``, ``ops`` and ``amplification`` their computation has.

A bound is only useful if the bug it guards against is far outside it: :func:`assert_f32_close` takes
the value a plausible bug would give (``wrong``) and asserts that it misses ``expected`` by at least
``margin`` (default 1e3) times the bound.
"""

from __future__ import annotations

import torch

__all__ = ["EPS_F32", "assert_f32_close", "f32_bound", "max_abs"]

#: float32 machine epsilon, 2^-23: the spacing of float32 numbers in [1, 2)
EPS_F32 = torch.finfo(torch.float32).eps


def max_abs(*tensors: torch.Tensor | float) -> float:
    """Largest magnitude among ``tensors`` (numbers allowed), as a Python float."""
    return max(float(torch.as_tensor(t).abs().max()) for t in tensors)


def f32_bound(scale: float, ops: int, amplification: float = 1.0) -> float:
    """``ops · eps_f32 · scale · amplification``: the float32 error allowance of a computation.

    Args:
        scale: the largest magnitude of any value the computation passes through.
        ops: the number of rounded operations on the longest path to one output element (for a
            reduction of n terms, count n).
        amplification: ``1 / c`` when the computation divides by a small ``c`` (1 otherwise).
    """
    return ops * EPS_F32 * scale * amplification


def assert_f32_close(actual: torch.Tensor, expected: torch.Tensor, bound: float,
                     wrong: torch.Tensor | None = None, margin: float = 1e3) -> None:
    """``max|actual − expected| ≤ bound``, and, given ``wrong``, ``max|wrong − expected| ≥ margin · bound``.

    Args:
        actual: what the code under test computed.
        expected: the reference (closed form, or the other route).
        bound: the allowance, from :func:`f32_bound`.
        wrong: what a plausible bug would have produced (wrong sign, mixed samples, the other reduction, ...).
        margin: how many bounds ``wrong`` must be away from ``expected``.
    """
    err = float((actual.double() - expected.double()).abs().max())
    assert err <= bound, f"max error {err:.3g} above the float32 bound {bound:.3g}"
    if wrong is not None:
        miss = float((wrong.double() - expected.double()).abs().max())
        assert miss >= margin * bound, f"the bug's value is only {miss:.3g} away, bound {bound:.3g}"
