"""Accuracy of the vectorised math kernels, in ulp of the output dtype.

fastloss._core.vecmath(name, x, isa) applies one ISA path's vector routine to
every element of x.  Each routine is compared with a higher-precision
reference (80-bit long double where NumPy has it, else mpmath, else float64
for the float32 routines) over dense grids of the whole range — overflow and
underflow edges, subnormal inputs and outputs —, random bit patterns,
special values and every tail length 0..33.

Run this file as a script to print the measured maximum ulp error per
function, dtype and ISA path.
"""

from __future__ import annotations

import math

import fastloss as fl
import numpy as np
import pytest

FUNCTIONS = ("exp", "log", "log1p", "expm1", "softplus", "sigmoid", "log_sigmoid")
DTYPES = (np.float32, np.float64)
# Documented accuracy of each routine, in ulp of the output dtype.
MAX_ULP = {
    "exp": 2, "log": 2, "log1p": 3, "expm1": 3, "softplus": 4, "sigmoid": 4, "log_sigmoid": 4,
}

LONGDOUBLE_IS_EXTENDED = np.finfo(np.longdouble).nmant >= 63


# --------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------


def _reference_numpy(name, x, hp):
    """name(x) evaluated in the floating type hp (long double or float64)."""
    x = np.asarray(x, dtype=hp)
    one = hp(1)
    with np.errstate(all="ignore"):
        if name == "exp":
            return np.exp(x)
        if name == "log":
            return np.log(x)
        if name == "log1p":
            return np.log1p(x)
        if name == "expm1":
            return np.expm1(x)
        a = np.abs(x)
        tail = np.log1p(np.exp(-a))  # log(1 + e^-|x|), no overflow
        if name == "softplus":
            out = np.maximum(x, hp(0)) + tail
        elif name == "log_sigmoid":
            out = np.minimum(x, hp(0)) - tail
        elif name == "sigmoid":
            e = np.exp(-a)
            out = np.where(x >= 0, one / (one + e), e / (one + e))
        else:
            raise ValueError(name)
        # Infinite inputs: the expressions above give NaN for +-inf - +-inf.
        inf = np.isinf(x)
        if inf.any():
            limits = {
                "softplus": (hp(np.inf), hp(0)),
                "log_sigmoid": (hp(0), hp(-np.inf)),
                "sigmoid": (one, hp(0)),
            }[name]
            out = np.where(inf, np.where(x > 0, limits[0], limits[1]), out)
        return out


def _reference_mpmath(name, x):
    import mpmath

    mpmath.mp.prec = 113

    def one(v):
        if math.isnan(v):
            return float("nan")
        v = mpmath.mpf(v)
        try:
            if name == "exp":
                r = mpmath.exp(v)
            elif name == "log":
                r = mpmath.log(v) if v >= 0 else mpmath.nan
            elif name == "log1p":
                r = mpmath.log1p(v) if v >= -1 else mpmath.nan
            elif name == "expm1":
                r = mpmath.expm1(v)
            elif name == "softplus":
                r = mpmath.log1p(mpmath.exp(v)) if v < 0 else v + mpmath.log1p(mpmath.exp(-v))
            elif name == "sigmoid":
                r = 1 / (1 + mpmath.exp(-v))
            elif name == "log_sigmoid":
                r = -(mpmath.log1p(mpmath.exp(-v)) if v > 0 else -v + mpmath.log1p(mpmath.exp(v)))
        except (ValueError, OverflowError):
            return float("nan")
        return r

    # Kept as mpf (more precise than any NumPy type); see ulp_error.
    return [one(float(v)) for v in x]


def reference(name, x):
    """Higher-precision values of name(x), as long double (or float64)."""
    x = np.asarray(x)
    if LONGDOUBLE_IS_EXTENDED:
        return _reference_numpy(name, x, np.longdouble)
    if x.dtype == np.float32:
        return _reference_numpy(name, x, np.float64)
    try:
        import mpmath  # noqa: F401
    except ImportError:
        pytest.skip("no float64 reference: no 80-bit long double and no mpmath")
    return _reference_numpy_from_mpmath(name, x)


def _reference_numpy_from_mpmath(name, x):
    # Without an extended long double, keep the error as a float64 pair:
    # value rounded to float64 and the remainder, so that ulp_error can use
    # value + remainder.
    vals = _reference_mpmath(name, x)
    hi = np.array([float(v) for v in vals])
    lo = np.array([
        0.0 if not math.isfinite(h) else float(v - h) if not isinstance(v, float) else 0.0
        for v, h in zip(vals, hi)
    ])
    return _Pair(hi, lo)


class _Pair:
    """float64 value + float64 remainder (only used without long double)."""

    def __init__(self, hi, lo):
        self.hi, self.lo = hi, lo


def ulp_error(actual, exact, dtype):
    """|actual - exact| in ulp of dtype at exact; 0 where both are the same special.

    The ulp is the spacing of dtype in the binade that holds the exact value
    (below a power of two it is the smaller spacing); subnormal and zero
    results use the smallest subnormal spacing.  A NaN, or an infinity, on one
    side only is an infinite error.
    """
    dtype = np.dtype(dtype)
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    if isinstance(exact, _Pair):
        hi, lo = exact.hi, exact.lo
        exact_hp = hi  # float64 granularity; the remainder is added below
    else:
        hi, lo = exact, None
        exact_hp = exact
    with np.errstate(all="ignore"):
        rounded = np.asarray(hi).astype(dtype)
        finfo = np.finfo(dtype)
        mag = np.abs(rounded)
        below = np.nextafter(mag, dtype.type(0))
        spacing = np.where(np.abs(exact_hp) < mag, np.spacing(below), np.spacing(mag))
        spacing = np.where(np.isinf(mag), np.spacing(finfo.max), spacing)
        diff = actual.astype(np.asarray(exact_hp).dtype) - exact_hp
        if lo is not None:
            diff = diff - lo
        err = np.abs(diff) / spacing.astype(np.asarray(exact_hp).dtype)
        err = np.asarray(err, dtype=np.float64)

        nan_a, nan_e = np.isnan(actual), np.isnan(exact_hp)
        inf_a, inf_e = np.isinf(actual), np.isinf(exact_hp)
        err = np.where(nan_a & nan_e, 0.0, err)
        err = np.where(nan_a ^ nan_e, np.inf, err)
        # Exact infinities (infinite inputs, log(0)) must be met exactly.
        same_inf = inf_a & inf_e & (np.sign(actual) == np.sign(exact_hp))
        err = np.where(inf_e & ~same_inf, np.inf, err)
        err = np.where(same_inf, 0.0, err)
        # An infinite result for a finite exact value: fine only where the
        # exact value rounds to that infinity (overflow).
        overflow_ok = inf_a & ~inf_e & np.isinf(rounded) & (np.sign(rounded) == np.sign(actual))
        err = np.where(inf_a & ~inf_e, np.where(overflow_ok, 0.0, np.inf), err)
    return err


def run(name, x, isa):
    x = np.ascontiguousarray(x)
    before = x.copy()
    out = fl._core.vecmath(name, x, isa)
    assert isinstance(out, np.ndarray)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert not np.shares_memory(out, x)
    assert np.array_equal(x, before, equal_nan=True), "input modified"
    return out


def max_ulp(name, x, isa):
    x = np.asarray(x)
    out = run(name, x, isa)
    err = ulp_error(out, reference(name, x), x.dtype)
    if err.size == 0:
        return 0.0, None
    i = int(np.argmax(err))
    return float(err[i]), (x[i], out[i])


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def around(points, width, n, dtype):
    """n points in [p - width, p + width] around each p, plus the nearest floats."""
    dtype = np.dtype(dtype)
    chunks = []
    for p in points:
        chunks.append(np.linspace(p - width, p + width, n))
        c = dtype.type(p)
        near = [c]
        up = down = c
        for _ in range(8):
            up = np.nextafter(up, dtype.type(np.inf))
            down = np.nextafter(down, dtype.type(-np.inf))
            near += [up, down]
        chunks.append(np.array(near, dtype=dtype))
    return np.concatenate([np.asarray(c, dtype=np.float64) for c in chunks])


def signed_geomspace(lo, hi, n):
    g = np.geomspace(lo, hi, n)
    return np.concatenate([g, -g])


def grid(name, dtype, n=1 << 16):
    """Dense inputs over the whole useful range, with the edges of each routine."""
    dtype = np.dtype(dtype)
    fi = np.finfo(dtype)
    tiny_sub = float(fi.smallest_subnormal)
    big = float(fi.max)
    with np.errstate(over="ignore"):  # geomspace up to max may round past it
        return _grid(name, dtype, n, fi, tiny_sub, big)


def _grid(name, dtype, n, fi, tiny_sub, big):
    # Overflow threshold, subnormal-result threshold, zero-result threshold
    # of exp: log(max), log(smallest normal), log(smallest subnormal / 2).
    ovf = math.log(big)
    sub = math.log(float(fi.smallest_normal))
    zero = math.log(tiny_sub) - math.log(2.0)
    subnormal_inputs = signed_geomspace(tiny_sub, float(fi.smallest_normal), 512)
    if name in ("exp", "expm1"):
        lo = zero - 2
        edges = around([ovf, sub, zero, math.log(tiny_sub)], 0.05, 2048, dtype)
        x = [np.linspace(lo, ovf + 1, 4 * n), edges,
             signed_geomspace(tiny_sub, 1.0, n), subnormal_inputs]
        if name == "expm1":
            x.append(np.linspace(-60, 60, n))
    elif name in ("log", "log1p"):
        x = [np.geomspace(tiny_sub, big, 4 * n), np.linspace(0.5, 2.0, n),
             np.linspace(0.999, 1.001, n),
             np.abs(subnormal_inputs)]
        if name == "log1p":
            x += [-1.0 + np.geomspace(float(fi.eps) / 2, 1.0, n), -np.geomspace(tiny_sub, 0.999, n),
                  np.linspace(-0.999, 3.0, n), np.linspace(-1e-3, 1e-3, n)]
    else:  # softplus, sigmoid, log_sigmoid
        edge = -zero + 20
        x = [np.linspace(-edge, edge, 4 * n), np.linspace(-40, 40, n),
             around([ovf, -ovf, sub, -sub, zero, -zero], 0.05, 1024, dtype),
             signed_geomspace(tiny_sub, big, n), subnormal_inputs]
    out = np.concatenate([np.asarray(c, dtype=np.float64) for c in x]).astype(dtype)
    return out[np.isfinite(out)]


def random_bits(dtype, n, seed):
    """Random bit patterns: every exponent equally likely, both signs; no NaN."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    itype = np.uint32 if dtype == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(itype).max, size=n, dtype=itype, endpoint=True)
    x = bits.view(dtype)
    return x[~np.isnan(x)]


def random_values(dtype, n, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, n), rng.normal(0, 30, n), rng.uniform(-1, 1, n) * 1e-6,
                           rng.uniform(0, 5, n)]).astype(dtype)


SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0])


def special_expected(name):
    """Exact results for 0, -0, inf, -inf, nan, 1, -1 (None: checked in ulp only)."""
    nan, inf = np.nan, np.inf
    return {
        "exp": [1.0, 1.0, inf, 0.0, nan, None, None],
        "log": [-inf, -inf, inf, nan, nan, 0.0, nan],
        "log1p": [0.0, -0.0, inf, nan, nan, None, -inf],
        "expm1": [0.0, -0.0, inf, -1.0, nan, None, None],
        "softplus": [None, None, inf, 0.0, nan, None, None],
        "sigmoid": [0.5, 0.5, 1.0, 0.0, nan, None, None],
        "log_sigmoid": [None, None, 0.0, -inf, nan, None, None],
    }[name]


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

name_param = pytest.mark.parametrize("name", FUNCTIONS)
dtype_param = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


def assert_within(name, dtype, isa, x, what):
    err, worst = max_ulp(name, x, isa)
    bound = MAX_ULP[name]
    assert err <= bound, (
        f"{name} {np.dtype(dtype).name} {isa} {what}: max error {err:.3g} ulp > {bound} "
        f"at x={worst[0]!r} (got {worst[1]!r})"
    )
    return err


def test_ulp_helper():
    one = np.array([1.0])
    assert ulp_error(one, np.array([1.0], np.longdouble), np.float64)[0] == 0
    up = np.nextafter(one, 2)
    assert ulp_error(up, np.array([1.0], np.longdouble), np.float64)[0] == pytest.approx(1.0)
    # Below 1 the spacing halves: an exact value just under 1 and a result
    # two floats under 1 are two ulp apart.
    down2 = np.nextafter(np.nextafter(one, 0), 0)
    just_under = np.array([1.0], np.longdouble) - np.longdouble(2.0**-60)
    assert ulp_error(down2, just_under, np.float64)[0] == pytest.approx(2.0, abs=0.01)
    assert ulp_error(np.nextafter(one, 0), np.array([1.0], np.longdouble), np.float64)[0] == 0.5
    sub = np.array([5e-324 * 3])
    assert ulp_error(sub, np.array([5e-324], np.longdouble), np.float64)[0] == pytest.approx(2.0)
    zero = np.array([0.0])
    assert ulp_error(zero, np.array([5e-324], np.longdouble), np.float64)[0] == pytest.approx(1.0)
    assert ulp_error(np.array([np.nan]), np.array([np.nan], np.longdouble), np.float64)[0] == 0
    assert ulp_error(np.array([np.nan]), np.array([1.0], np.longdouble), np.float64)[0] == np.inf
    assert ulp_error(np.array([np.inf]), np.array([1e308], np.longdouble), np.float64)[0] == np.inf
    assert ulp_error(np.array([np.inf]), np.array([1e309], np.longdouble), np.float64)[0] == 0
    minus_inf = np.array([-np.inf])
    assert ulp_error(minus_inf, np.array([np.inf], np.longdouble), np.float64)[0] == np.inf
    f = np.array([1.0], np.float32)
    f_up = np.nextafter(f, np.float32(2))
    assert ulp_error(f_up, np.array([1.0], np.longdouble), np.float32)[0] == pytest.approx(1.0)


@pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="needs 80-bit long double")
def test_reference_against_mpmath():
    # The long double reference is itself checked to ~1e-3 float64 ulp.
    mpmath = pytest.importorskip("mpmath")
    x = np.concatenate([np.linspace(-740, 705, 301), signed_geomspace(1e-300, 700, 50),
                        np.linspace(-0.999, 2, 31)])
    for name in FUNCTIONS:
        xs = x[x > 0] if name == "log" else x[x > -1] if name == "log1p" else x
        ld = reference(name, xs)
        mp = _reference_mpmath(name, xs)
        for v, a, b in zip(xs, ld, mp):
            # |ld - mp| in float64 ulp at the value
            spacing = float(np.spacing(np.abs(np.float64(float(b))))) or 5e-324
            diff = abs(mpmath.mpf(str(np.format_float_scientific(a, unique=True))) - b)
            assert float(diff) / spacing < 2e-3, (name, v)


@name_param
@dtype_param
def test_grid(name, dtype, isa):
    assert_within(name, dtype, isa, grid(name, dtype), "grid")


@name_param
@dtype_param
def test_random_bits(name, dtype, isa):
    assert_within(name, dtype, isa, random_bits(dtype, 1 << 17, seed=11), "random bit patterns")


@name_param
@dtype_param
def test_random_values(name, dtype, isa):
    x = random_values(dtype, 1 << 15, seed=12)
    if name == "log":
        x = np.abs(x)
    if name == "log1p":
        x = np.abs(x) - np.asarray(0.5, dtype)
    assert_within(name, dtype, isa, x, "random values")


@name_param
@dtype_param
def test_special_values(name, dtype, isa):
    x = SPECIALS.astype(dtype)
    out = run(name, x, isa)
    for xi, got, want in zip(x, out, special_expected(name)):
        if want is None:
            continue
        if math.isnan(want):
            assert np.isnan(got), f"{name}({xi}) = {got}, expected nan"
        else:
            assert got == want, f"{name}({xi}) = {got!r}, expected {want!r}"
    # And all of them within the bound of the reference.
    assert_within(name, dtype, isa, x, "special values")


@name_param
@dtype_param
def test_special_values_in_every_lane(name, dtype, isa):
    # The special values at every position of a vector and of its tail.
    x = np.tile(SPECIALS, 13).astype(dtype)
    for n in range(len(x) - 40, len(x) + 1):
        assert_within(name, dtype, isa, x[:n], f"specials, length {n}")
        assert_within(name, dtype, isa, x[len(x) - n:], f"specials offset, length {n}")


@name_param
@dtype_param
def test_tail_lengths(name, dtype, isa):
    rng = np.random.default_rng(13)
    pool = np.concatenate([grid(name, dtype, n=64), SPECIALS.astype(dtype)])
    for n in range(34):
        x = rng.permutation(pool)[:n].astype(dtype)
        assert_within(name, dtype, isa, x, f"length {n}")
        # Tail elements agree with the same values inside a full vector body.
        long = np.concatenate([np.ones(64, dtype), x])
        body = run(name, long, isa)[64:]
        err = ulp_error(body, reference(name, x), dtype)
        assert err.size == 0 or err.max() <= MAX_ULP[name]


@name_param
@dtype_param
def test_subnormal_inputs(name, dtype, isa):
    fi = np.finfo(dtype)
    lo, hi = float(fi.smallest_subnormal), float(fi.smallest_normal)
    sub = np.concatenate([np.geomspace(lo, hi, 4096),
                          [float(fi.smallest_subnormal), float(fi.smallest_normal)]]).astype(dtype)
    x = np.concatenate([sub, -sub])
    if name == "log":
        x = sub
    assert_within(name, dtype, isa, x, "subnormal inputs")


def in_domain(name, dtype, n, seed=14):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, n)
    if name == "log":
        x = np.abs(x) + 0.1
    if name == "log1p":
        x = np.abs(x) - 0.5
    return x.astype(dtype)


@name_param
@dtype_param
def test_no_spurious_invalid_flag(name, dtype, isa, fp_exceptions):
    # Finite in-domain inputs, every tail length: no lane (padding included)
    # may raise "invalid" or "divbyzero".
    bad = {}
    inputs = [(f"length {n}", in_domain(name, dtype, n)) for n in range(34)]
    # Whole vectors of zeros and of tiny values (1 + x == 1 for log1p).
    if name != "log":
        inputs += [(f"{v!r} x {n}", np.full(n, v, dtype)) for v in (0.0, 1e-30) for n in (16, 32)]
    for what, x in inputs:
        raised = fp_exceptions(lambda x=x: fl._core.vecmath(name, x, isa))
        raised &= {"invalid", "divbyzero"}
        if raised:
            bad[what] = sorted(raised)
    assert not bad, f"{name} {np.dtype(dtype).name} {isa}: flags raised for {bad}"


@name_param
def test_isa_argument_validation(name):
    x = np.ones(4)
    with pytest.raises(ValueError):
        fl._core.vecmath(name, x, "no_such_isa")
    # A path compiled in but not supported by this CPU is refused, not run.
    for isa in set(fl._core.compiled_isas()) - set(fl._core.supported_isas()):
        with pytest.raises(ValueError):
            fl._core.vecmath(name, x, isa)


def test_unknown_function():
    with pytest.raises(ValueError):
        fl._core.vecmath("tanh_typo", np.ones(4), "baseline")


# --------------------------------------------------------------------------
# Measured accuracy table (python tests/test_vecmath.py)
# --------------------------------------------------------------------------


def measure():
    rows = []
    for isa in fl._core.supported_isas():
        for dtype in DTYPES:
            for name in FUNCTIONS:
                x = np.concatenate([grid(name, dtype), random_bits(dtype, 1 << 17, 11),
                                    random_values(dtype, 1 << 15, 12)])
                err, worst = max_ulp(name, x, isa)
                rows.append((name, np.dtype(dtype).name, isa, err, MAX_ULP[name], worst))
    return rows


if __name__ == "__main__":
    print(f"{'function':<12} {'dtype':<8} {'isa':<9} {'max ulp':>9} {'bound':>6}  worst x")
    for name, dt, isa, err, bound, worst in measure():
        flag = "" if err <= bound else "  EXCEEDS"
        print(f"{name:<12} {dt:<8} {isa:<9} {err:9.3f} {bound:6d}  {worst[0]!r}{flag}")
