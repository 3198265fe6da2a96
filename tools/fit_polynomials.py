"""Fit the float32 polynomials of src/core/vecmath.hpp (exp_tail, atanh2_series).

    python tools/fit_polynomials.py

Needs NumPy and mpmath. Each polynomial is fitted to the minimax weighted error on a dense
grid by Lawson's algorithm (iteratively reweighted least squares: the weights are multiplied by
the current errors, which moves them onto the extremal points), then its coefficients are
rounded to float32 and the error of the rounded polynomial is evaluated again in float64.
The printed hex literals are the ones in vecmath.hpp; errors are in units of 2^-24 (half an
ulp of float32 at 1).

* exp_tail: expm1(r) = r + r^2 T(r) on |r| <= 1.001 ln(2)/2, T of degree 4 (exp and expm1 of
  degree 6), weighted so that the error is relative to expm1(r) (and therefore also to exp(r),
  which is larger in magnitude on this range).
* atanh2_series: 2 atanh(f) = 2 f + 2 f s P(s), s = f^2, on |f| <= 1.001 (3 - 2 sqrt 2)
  (the reduced range of vlog), P of degree 2, weighted relative to atanh(f).
"""

from __future__ import annotations

import numpy as np
from mpmath import atanh, expm1, log, mp, mpf, sqrt

mp.dps = 40
SCALE = 2.0 ** -24


def lawson(x, target, degree, weight, iterations=3000):
    """Coefficients (lowest first) of the weighted minimax polynomial, and its error."""
    vander = np.vander(x, degree + 1, increasing=True)
    lw = np.full(x.shape, 1.0 / x.size)
    for _ in range(iterations):
        sw = np.sqrt(lw) * weight
        coef = np.linalg.lstsq(vander * sw[:, None], target * sw, rcond=None)[0]
        err = np.abs(vander @ coef - target) * weight
        lw = lw * err
        lw /= lw.sum()
    return coef, err.max()


def rounded_error(x, target, coef, weight):
    c32 = np.array([float(np.float32(c)) for c in coef])
    vander = np.vander(x, c32.size, increasing=True)
    return c32, (np.abs(vander @ c32 - target) * weight).max()


def report(name, var, c32, err_fit, err_rounded):
    print(f"{name}: fitted {err_fit / SCALE:.4f}, with float32 coefficients "
          f"{err_rounded / SCALE:.4f} (x 2^-24, relative)")
    for k in range(c32.size - 1, -1, -1):
        print(f"  {var}^{k}: {float(np.float32(c32[k])).hex()}  ({np.float32(c32[k])!r})")


def main():
    # exp_tail
    a = float(log(2) / 2) * 1.001
    r = np.linspace(-a, a, 3000)
    r = r[np.abs(r) > 1e-5]
    em1 = [expm1(mpf(v)) for v in r]
    tail = np.array([float((e - mpf(v)) / mpf(v) ** 2) for e, v in zip(em1, r)])
    weight = r ** 2 / np.abs(np.array([float(e) for e in em1]))
    coef, err = lawson(r, tail, 4, weight)
    c32, err32 = rounded_error(r, tail, coef, weight)
    report("exp_tail (float32)", "r", c32, err, err32)

    # atanh2_series
    fmax = float(3 - 2 * sqrt(2)) * 1.001
    f = np.linspace(1e-3, fmax, 3000)
    s = f ** 2
    p = np.array([float((atanh(mpf(v)) - mpf(v)) / mpf(v) ** 3) for v in f])
    weight = s * f / np.array([float(atanh(mpf(v))) for v in f])
    coef, err = lawson(s, p, 2, weight)
    c32, err32 = rounded_error(s, p, coef, weight)
    report("atanh2_series (float32)", "s", c32, err, err32)


if __name__ == "__main__":
    main()
