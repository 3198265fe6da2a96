"""The libraries fastloss is compared with, each computing the same math.

Every peer turns (loss case, operation, inputs) into a ``Runner``: a
zero-argument ``call`` that does the work as a user of that library would
write it (the thing that is timed) and a ``to_result`` that turns what
``call`` returned into ``{"value", "grad", "hess"}`` NumPy objects for the
check against fastloss (not timed).  A peer that is not installed, or has no
formula for a loss, is skipped.

The operations follow fastloss's conventions (see ``cases.OPS``):
``value`` and ``value_and_grad`` use the mean over all elements, so the
gradient carries the 1/N factor; ``grad_hess`` is per element (the gradient
of the sum) with the exact diagonal Hessian.

Adding a loss: one entry in each peer's formula table below (NumPy, Numba
element functions, PyTorch, JAX; scikit-learn only if it has that loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

LN2 = math.log(2.0)


@dataclass
class Runner:
    call: Callable[[], Any]
    to_result: Callable[[Any], dict]
    skip_compare: frozenset = frozenset()   # result keys whose convention differs
    note: str = ""


def _as_float(v) -> float:
    return float(np.asarray(v))


class Peer:
    """Base class: a peer library.  ``available`` is False when not importable."""

    name = "peer"
    # How the thread count under test reaches the library (or why it does not).
    threads_note = ""

    def __init__(self) -> None:
        self.available = False
        self.version: str | None = None
        self.reason = ""

    def set_threads(self, n: int) -> None:  # noqa: B027 - optional hook
        pass

    def effective_threads(self, n: int) -> str:
        return str(n)

    def reset_inputs(self) -> None:  # noqa: B027 - optional hook
        """Called when the driver moves on to new input arrays."""

    def build(self, case, op: str, inputs: tuple[np.ndarray, ...], threads: int,
              preallocated: bool = False) -> Runner | None:
        raise NotImplementedError


# --------------------------------------------------------------------------
# NumPy: plain array expressions, a temporary per step, in place where a
# careful user would write it in place.  Always single-threaded.

def _np_squared_error(op, p, t):
    r = p - t
    if op == "value":
        return np.mean(np.square(r, out=r))
    if op == "value_and_grad":
        v = np.mean(np.square(r))
        r *= r.dtype.type(2.0 / r.size)
        return v, r
    r *= r.dtype.type(2.0)
    return r, np.full_like(r, 2.0)


def _np_absolute_error(op, p, t):
    r = p - t
    if op == "value":
        return np.mean(np.abs(r, out=r))
    if op == "value_and_grad":
        v = np.mean(np.abs(r))
        g = np.sign(r, out=r)
        g *= g.dtype.type(1.0 / g.size)
        return v, g
    return np.sign(r, out=r), np.zeros_like(r)


def _np_huber(op, p, t, delta):
    r = p - t
    a = np.abs(r)
    if op in ("value", "value_and_grad"):
        quad = a <= delta
        v = np.mean(np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta)))
        if op == "value":
            return v
        g = np.clip(r, -delta, delta, out=r)
        g *= g.dtype.type(1.0 / g.size)
        return v, g
    h = (a <= delta).astype(r.dtype)
    return np.clip(r, -delta, delta, out=r), h


def _np_log_cosh(op, p, t):
    r = p - t
    if op in ("value", "value_and_grad"):
        # log(cosh r) = logaddexp(r, -r) - log 2, finite for every finite r
        v = np.mean(np.logaddexp(r, -r)) - LN2
        if op == "value":
            return v
        g = np.tanh(r, out=r)
        g *= g.dtype.type(1.0 / g.size)
        return v, g
    g = np.tanh(r, out=r)
    return g, 1.0 - g * g


NUMPY_FORMULAS = {
    "squared_error": _np_squared_error,
    "absolute_error": _np_absolute_error,
    "huber": _np_huber,
    "log_cosh": _np_log_cosh,
}


def _result_value(v):
    return {"value": _as_float(v)}


def _result_value_grad(out):
    v, g = out
    return {"value": _as_float(v), "grad": np.asarray(g)}


def _result_grad_hess(out):
    g, h = out
    return {"grad": np.asarray(g), "hess": np.asarray(h)}


RESULT_OF_OP = {"value": _result_value, "value_and_grad": _result_value_grad,
                "grad_hess": _result_grad_hess}


class NumpyPeer(Peer):
    name = "numpy"
    threads_note = "single-threaded (NumPy ufuncs and reductions)"

    def __init__(self) -> None:
        super().__init__()
        self.available = True
        self.version = np.__version__

    def effective_threads(self, n: int) -> str:
        return "1"

    def build(self, case, op, inputs, threads, preallocated=False):
        f = NUMPY_FORMULAS.get(case.name)
        if f is None or preallocated:
            return None
        p, t = inputs
        params = case.params
        return Runner(lambda: f(op, p, t, **params), RESULT_OF_OP[op])


# --------------------------------------------------------------------------
# Numba: one fused parallel loop per operation (value sum and gradient in the
# same pass), float64 accumulation like fastloss, fastmath off so the
# arithmetic is IEEE as written.  Element functions are generic over the
# dtype; their constants come in a tuple of the input dtype so float32 math
# stays float32.

# Indices into the constants tuple.
_ZERO, _ONE, _HALF, _DELTA, _LN2 = range(5)


def _numba_constants(dtype, params) -> tuple:
    c = np.dtype(dtype).type
    return (c(0.0), c(1.0), c(0.5), c(params.get("delta", 1.0)), c(LN2))


def _numba_element_functions(nb):
    """{loss name: (value, grad, hess)} element functions of (f, y, k)."""
    inline = nb.njit(inline="always")

    @inline
    def sq_v(f, y, k):
        r = f - y
        return r * r

    @inline
    def sq_g(f, y, k):
        r = f - y
        return r + r

    @inline
    def sq_h(f, y, k):
        return k[_ONE] + k[_ONE]

    @inline
    def abs_v(f, y, k):
        return abs(f - y)

    @inline
    def abs_g(f, y, k):
        r = f - y
        if r > k[_ZERO]:
            return k[_ONE]
        if r < k[_ZERO]:
            return -k[_ONE]
        return k[_ZERO]

    @inline
    def abs_h(f, y, k):
        return k[_ZERO]

    @inline
    def hub_v(f, y, k):
        r = f - y
        a = abs(r)
        d = k[_DELTA]
        if a <= d:
            return k[_HALF] * r * r
        return d * (a - k[_HALF] * d)

    @inline
    def hub_g(f, y, k):
        r = f - y
        d = k[_DELTA]
        if r > d:
            return d
        if r < -d:
            return -d
        return r

    @inline
    def hub_h(f, y, k):
        if abs(f - y) <= k[_DELTA]:
            return k[_ONE]
        return k[_ZERO]

    @inline
    def lc_v(f, y, k):
        a = abs(f - y)
        return a + math.log1p(math.exp(-(a + a))) - k[_LN2]

    @inline
    def lc_g(f, y, k):
        return math.tanh(f - y)

    @inline
    def lc_h(f, y, k):
        th = math.tanh(f - y)
        return k[_ONE] - th * th

    return {
        "squared_error": (sq_v, sq_g, sq_h),
        "absolute_error": (abs_v, abs_g, abs_h),
        "huber": (hub_v, hub_g, hub_h),
        "log_cosh": (lc_v, lc_g, lc_h),
    }


def _numba_kernels(nb, ev, eg, eh):
    jit = nb.njit(parallel=True, fastmath=False)
    prange = nb.prange

    @jit
    def value_mean(p, t, k):
        s = 0.0
        for i in prange(p.size):
            s += ev(p[i], t[i], k)
        return s / p.size

    @jit
    def value_and_grad_mean(p, t, k, scale, g):
        s = 0.0
        for i in prange(p.size):
            s += ev(p[i], t[i], k)
            g[i] = eg(p[i], t[i], k) * scale
        return s / p.size

    @jit
    def grad_hess(p, t, k, g, h):
        for i in prange(p.size):
            g[i] = eg(p[i], t[i], k)
            h[i] = eh(p[i], t[i], k)

    return {"value": value_mean, "value_and_grad": value_and_grad_mean,
            "grad_hess": grad_hess}


class NumbaPeer(Peer):
    name = "numba"
    threads_note = "numba.set_num_threads (capped at NUMBA_NUM_THREADS)"

    def __init__(self) -> None:
        super().__init__()
        try:
            import numba
        except Exception as exc:  # pragma: no cover - depends on the machine
            self.reason = f"not importable: {exc}"
            return
        self.nb = numba
        self.available = True
        self.version = numba.__version__
        self._elements = None
        self._kernels: dict[str, dict] = {}

    def _kernels_for(self, name):
        if self._elements is None:
            self._elements = _numba_element_functions(self.nb)
        if name not in self._elements:
            return None
        if name not in self._kernels:
            self._kernels[name] = _numba_kernels(self.nb, *self._elements[name])
        return self._kernels[name]

    def _cap(self, n):
        return max(1, min(n, self.nb.config.NUMBA_NUM_THREADS))

    def set_threads(self, n):
        self.nb.set_num_threads(self._cap(n))

    def effective_threads(self, n):
        return str(self._cap(n))

    def threading_layer(self) -> str | None:
        try:
            return self.nb.threading_layer()
        except Exception:
            return None

    def build(self, case, op, inputs, threads, preallocated=False):
        kernels = self._kernels_for(case.name)
        if kernels is None:
            return None
        p, t = inputs
        k = _numba_constants(p.dtype, case.params)
        kern = kernels[op]
        if op == "value":
            if preallocated:
                return None
            return Runner(lambda: kern(p, t, k), _result_value)
        if op == "value_and_grad":
            scale = p.dtype.type(1.0 / p.size)
            if preallocated:
                g = np.empty_like(p)
                return Runner(lambda: (kern(p, t, k, scale, g), g), _result_value_grad)

            def vg():
                g = np.empty_like(p)
                return kern(p, t, k, scale, g), g
            return Runner(vg, _result_value_grad)
        if preallocated:
            g, h = np.empty_like(p), np.empty_like(p)

            def gh_out():
                kern(p, t, k, g, h)
                return g, h
            return Runner(gh_out, _result_grad_hess)

        def gh():
            g, h = np.empty_like(p), np.empty_like(p)
            kern(p, t, k, g, h)
            return g, h
        return Runner(gh, _result_grad_hess)


# --------------------------------------------------------------------------
# PyTorch (CPU): the library's own loss functions, autograd for the gradient
# (forward + backward, as a training step does it), and for grad_hess a
# double backward: the losses are elementwise, so H @ 1 is diag(H).

def _torch_formulas(torch):
    F = torch.nn.functional

    def _reduce(x, reduction):
        return x.mean() if reduction == "mean" else x.sum()

    def log_cosh(p, t, reduction):
        r = p - t
        return _reduce(torch.logaddexp(r, -r) - LN2, reduction)

    return {
        "squared_error": lambda p, t, reduction: F.mse_loss(p, t, reduction=reduction),
        "absolute_error": lambda p, t, reduction: F.l1_loss(p, t, reduction=reduction),
        "huber": lambda p, t, reduction, delta: F.huber_loss(p, t, reduction=reduction,
                                                             delta=delta),
        "log_cosh": log_cosh,
    }


class TorchPeer(Peer):
    name = "torch"
    threads_note = "torch.set_num_threads"

    def __init__(self) -> None:
        super().__init__()
        try:
            import torch
        except Exception as exc:  # pragma: no cover
            self.reason = f"not importable: {exc}"
            return
        self.torch = torch
        self.available = True
        self.version = torch.__version__
        self.formulas = _torch_formulas(torch)

    def set_threads(self, n):
        self.torch.set_num_threads(n)

    def build(self, case, op, inputs, threads, preallocated=False):
        f = self.formulas.get(case.name)
        if f is None or preallocated:
            return None
        torch = self.torch
        params = case.params
        p, t = inputs
        T = torch.from_numpy(t)
        if op == "value":
            P = torch.from_numpy(p)

            def value():
                with torch.inference_mode():
                    return f(P, T, "mean", **params)
            return Runner(value, lambda v: {"value": float(v)})

        P = torch.from_numpy(p).requires_grad_(True)
        if op == "value_and_grad":
            def vg():
                P.grad = None
                v = f(P, T, "mean", **params)
                v.backward()
                return v.detach(), P.grad
            return Runner(vg, lambda o: {"value": float(o[0]), "grad": o[1].numpy()})

        ones = torch.ones_like(P)

        def gh():
            s = f(P, T, "sum", **params)
            (g,) = torch.autograd.grad(s, P, create_graph=True)
            (h,) = torch.autograd.grad(g, P, grad_outputs=ones, allow_unused=True,
                                       materialize_grads=True)
            return g.detach(), h
        # A Hessian that autograd knows to be zero comes back as a lazy
        # ZeroTensor (nothing written): force= materialises it for the check.
        return Runner(gh, lambda o: {"grad": o[0].numpy(), "hess": o[1].numpy(force=True)},
                      note="Hessian diagonal by double backward (H @ 1)")


# --------------------------------------------------------------------------
# JAX: jax.jit of the mean (value), of jax.value_and_grad, and for grad_hess
# of a forward-over-reverse product jvp(grad(sum), ones) = (g, diag H).

def _jax_formulas(jnp):
    def squared_error(p, t):
        r = p - t
        return r * r

    def absolute_error(p, t):
        return jnp.abs(p - t)

    def huber(p, t, delta):
        r = p - t
        a = jnp.abs(r)
        return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))

    def log_cosh(p, t):
        r = p - t
        return jnp.logaddexp(r, -r) - LN2

    return {"squared_error": squared_error, "absolute_error": absolute_error,
            "huber": huber, "log_cosh": log_cosh}


class JaxPeer(Peer):
    name = "jax"
    threads_note = ("not controllable at run time: XLA's CPU client sizes its own "
                    "thread pool at start-up; the same JAX rows run under every "
                    "thread setting")

    def __init__(self) -> None:
        super().__init__()
        try:
            import jax
            jax.config.update("jax_enable_x64", True)  # float64 rows stay float64
            import jax.numpy as jnp
        except Exception as exc:  # pragma: no cover
            self.reason = f"not importable: {exc}"
            return
        self.jax, self.jnp = jax, jnp
        self.available = True
        self.version = jax.__version__
        self.formulas = _jax_formulas(jnp)
        self._device_inputs: dict = {}
        self._jitted: dict = {}

    def effective_threads(self, n):
        return "uncontrolled"

    def reset_inputs(self):
        self._device_inputs.clear()

    def _on_device(self, a):
        # One device copy per NumPy array, reused by every JAX case until the
        # driver moves to new arrays (reset_inputs).
        hit = self._device_inputs.get(id(a))
        if hit is None or hit[0] is not a:
            hit = self._device_inputs[id(a)] = (a, self.jax.device_put(a))
        return hit[1]

    def build(self, case, op, inputs, threads, preallocated=False):
        elem = self.formulas.get(case.name)
        if elem is None or preallocated:
            return None
        jax, jnp = self.jax, self.jnp
        params = dict(case.params)
        P, T = (self._on_device(a) for a in inputs)

        key = (case.name, op, tuple(sorted(params.items())))
        fn = self._jitted.get(key)
        if fn is None:
            # One jitted function per loss and operation; jit's own cache
            # then holds one compilation per shape and dtype.
            def mean_loss(p, t):
                return jnp.mean(elem(p, t, **params))

            if op == "value":
                fn = jax.jit(mean_loss)
            elif op == "value_and_grad":
                fn = jax.jit(jax.value_and_grad(mean_loss))
            else:
                def grad_hess(p, t):
                    g_of = jax.grad(lambda q: jnp.sum(elem(q, t, **params)))
                    return jax.jvp(g_of, (p,), (jnp.ones_like(p),))
                fn = jax.jit(grad_hess)
            self._jitted[key] = fn
        to_result = RESULT_OF_OP[op]

        def call():
            return jax.block_until_ready(fn(P, T))
        return Runner(call, to_result)


# --------------------------------------------------------------------------
# scikit-learn's private loss module (sklearn._loss.loss): compiled Cython
# kernels with OpenMP (n_threads).  Its conventions differ from fastloss's and
# are adapted inside the timed call so that the outputs are the same numbers:
#   * HalfSquaredError is (y - f)^2 / 2: value, gradient and Hessian x 2;
#   * the methods return per-sample arrays: value = mean of the loss array,
#     the mean's gradient = per-sample gradient / N (one more pass each);
#   * HuberLoss takes delta fixed here; its `quantile` (re-estimating delta as
#     a quantile of |residuals|) is only used by gradient boosting and is
#     ignored;
#   * AbsoluteError.gradient_hessian returns hessian 1 (the constant the GBDT
#     uses), not the exact 0; that Hessian is not compared.

@dataclass
class _SkLoss:
    make: Callable[..., Any]
    scale: float = 1.0
    skip_hess: bool = False
    note: str = ""
    params: tuple = field(default_factory=tuple)


class SklearnPeer(Peer):
    name = "sklearn"
    threads_note = "n_threads= of the loss methods"

    def __init__(self) -> None:
        super().__init__()
        try:
            import sklearn
            from sklearn._loss import loss as skl
        except Exception as exc:  # pragma: no cover
            self.reason = f"not importable: {exc}"
            return
        self.available = True
        self.version = sklearn.__version__
        self.table = {
            "squared_error": _SkLoss(lambda: skl.HalfSquaredError(), scale=2.0,
                                     note="HalfSquaredError x 2 (extra passes timed)"),
            "absolute_error": _SkLoss(lambda: skl.AbsoluteError(), skip_hess=True,
                                      note="AbsoluteError hessian is 1 (GBDT), not compared"),
            "huber": _SkLoss(lambda delta: skl.HuberLoss(delta=delta), params=("delta",),
                             note="HuberLoss with fixed delta (quantile unused)"),
        }

    def build(self, case, op, inputs, threads, preallocated=False):
        spec = self.table.get(case.name)
        if spec is None or preallocated:
            return None
        loss = spec.make(**{k: case.params[k] for k in spec.params})
        p, t = inputs
        n = p.size
        scale = spec.scale
        note = spec.note
        if op == "value":
            def value():
                return scale * loss(t, p, n_threads=threads)
            return Runner(value, _result_value, note=note)
        if op == "value_and_grad":
            gscale = p.dtype.type(scale / n)

            def vg():
                lo, g = loss.loss_gradient(t, p, n_threads=threads)
                v = scale * np.mean(lo)
                g *= gscale
                return v, g
            return Runner(vg, _result_value_grad, note=note)

        two = p.dtype.type(scale)

        def gh():
            g, h = loss.gradient_hessian(t, p, n_threads=threads)
            if scale != 1.0:
                g *= two
                h *= two
            return g, h
        skip = frozenset({"hess"}) if spec.skip_hess else frozenset()
        return Runner(gh, _result_grad_hess, skip_compare=skip, note=note)


PEER_CLASSES = {c.name: c for c in (NumpyPeer, NumbaPeer, TorchPeer, JaxPeer, SklearnPeer)}
