"""The public surface: the Loss protocol, argument validation, show_config.

Every validation error is checked for its exact exception type and for the
name of the offending argument in its message.
"""

from __future__ import annotations

import collections.abc
import os
import subprocess
import sys

import fastloss as fl
import numpy as np
import pytest

REGRESSION = ("squared_error", "absolute_error", "huber", "log_cosh")
METHODS = ("__call__", "grad", "value_and_grad", "grad_hess")


def method_of(name, method):
    loss = fl.losses[name]
    return loss if method == "__call__" else getattr(loss, method)


def data(n=8, dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)


method_param = pytest.mark.parametrize("method", METHODS)
name_param = pytest.mark.parametrize("name", REGRESSION)


# --------------------------------------------------------------------------
# The Loss protocol
# --------------------------------------------------------------------------


def test_registry():
    assert isinstance(fl.losses, collections.abc.Mapping)
    assert set(REGRESSION) <= set(fl.losses)
    for name, loss in fl.losses.items():
        assert isinstance(name, str)
        assert isinstance(loss, fl.Loss), name


@name_param
def test_loss_object(name):
    loss = fl.losses[name]
    assert getattr(fl, name) is loss
    assert isinstance(loss, fl.Loss)
    assert callable(loss)
    for attr in ("grad", "value_and_grad", "grad_hess"):
        assert callable(getattr(loss, attr)), attr
    assert name in repr(loss)
    assert loss.__doc__, "each loss documents its formula"


@name_param
def test_methods_agree(name):
    pred, target = data(50)
    loss = fl.losses[name]
    value = loss(pred, target)
    grad = loss.grad(pred, target)
    v2, g2 = loss.value_and_grad(pred, target)
    g3, hess = loss.grad_hess(pred, target)
    np.testing.assert_allclose(v2, value, rtol=1e-15)
    np.testing.assert_allclose(g2, grad, rtol=1e-15)
    np.testing.assert_allclose(g3, grad, rtol=1e-15)
    assert hess.shape == grad.shape


@name_param
@method_param
def test_options_are_keyword_only(name, method):
    pred, target = data()
    with pytest.raises(TypeError):
        method_of(name, method)(pred, target, "sum")


# The arrays by keyword, under the names the docs use (docs/losses.md): the same result as
# positionally, for every method.
KEYWORD_CASES = [
    ("squared_error", "pred", "target", "elementwise"),
    ("sigmoid_cross_entropy", "logits", "target", "binary"),
    ("sigmoid_focal", "logits", "target", "binary"),
    ("sigmoid_power_cross_entropy", "logits", "target", "binary"),
    ("hinge", "scores", "target", "sign"),
    ("hinge", "logits", "target", "sign"),
    ("softmax_cross_entropy", "logits", "target", "rows"),
    ("softmax_focal", "logits", "target", "rows"),
    ("pairwise_logistic", "scores", "relevance", "elementwise"),
]


def keyword_data(kind):
    rng = np.random.default_rng(3)
    if kind == "rows":
        return rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    x = rng.normal(size=10)
    if kind == "binary":
        return x, (rng.random(10) < 0.4).astype(np.float64)
    if kind == "sign":
        return x, np.where(rng.random(10) < 0.5, -1.0, 1.0)
    return x, rng.normal(size=10)


@pytest.mark.parametrize("name, first, second, kind", KEYWORD_CASES)
@method_param
def test_arrays_by_documented_keyword(name, first, second, kind, method):
    x, t = keyword_data(kind)
    f = method_of(name, method)
    expected = f(x, t, reduction="sum")
    for got in (f(**{first: x, second: t}, reduction="sum"),
                f(x, **{second: t}, reduction="sum"),
                f(pred=x, target=t, reduction="sum")):
        for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                        got if isinstance(got, tuple) else (got,)):
            np.testing.assert_array_equal(g, e)


@method_param
def test_arrays_by_keyword_errors(method):
    x, t = keyword_data("binary")
    f = method_of("sigmoid_focal", method)
    with pytest.raises(TypeError, match="multiple values for argument 'logits'"):
        f(x, t, logits=x)
    with pytest.raises(TypeError, match="multiple values for argument 'logits'"):
        f(pred=x, logits=x, target=t)
    with pytest.raises(TypeError, match="missing required argument 'logits'"):
        f(target=t)
    with pytest.raises(TypeError, match="missing required argument 'target'"):
        f(logits=x)
    # A name that is not the loss's: an unknown parameter, not an alias.
    with pytest.raises(TypeError, match="missing required argument 'pred' "
                                        r"\(got an unexpected keyword argument 'logits'\)"):
        method_of("squared_error", method)(logits=x, target=t)
    with pytest.raises(TypeError, match="multiple values for argument 'relevance'"):
        method_of("pairwise_logistic", method)(x, t, relevance=t)


def test_softmax_focal_from_logits_keyword():
    x, y = keyword_data("rows")
    np.testing.assert_array_equal(fl.softmax_focal(x, y, from_logits=True), fl.softmax_focal(x, y))
    with pytest.raises(TypeError, match="from_logits"):
        fl.softmax_focal(x, y, from_logits=1)


def test_huber_delta_is_keyword_only():
    pred, target = data()
    with pytest.raises(TypeError):
        fl.huber(pred, target, 2.0)


def test_hess_floor_is_used():
    pred, target = data(20)
    _, hess = fl.absolute_error.grad_hess(pred, target, hessian="clip", hess_floor=0.25)
    np.testing.assert_array_equal(hess, np.full(20, 0.25))
    _, hess = fl.absolute_error.grad_hess(pred, target, hessian="clip")
    np.testing.assert_array_equal(hess, np.full(20, 1e-6))
    _, hess = fl.huber.grad_hess(pred * 4, target, hessian="clip", hess_floor=0.125)
    assert set(np.unique(hess)) <= {0.125, 1.0}


@pytest.mark.parametrize(
    "name, fisher", [("squared_error", 2.0), ("absolute_error", 1.0), ("log_cosh", 0.5)]
)
def test_fisher_values(name, fisher):
    pred, target = data(20)
    w = np.linspace(0.5, 2.0, 20)
    _, hess = fl.losses[name].grad_hess(pred, target, hessian="fisher", sample_weight=w)
    np.testing.assert_allclose(hess, fisher * w, rtol=1e-15)


# --------------------------------------------------------------------------
# Validation: exact exception type, argument named in the message
# --------------------------------------------------------------------------


@name_param
@method_param
def test_shape_mismatch(name, method):
    pred, _ = data(5)
    _, target = data(4)
    with pytest.raises(ValueError, match="target"):
        method_of(name, method)(pred, target)
    with pytest.raises(ValueError, match="target"):
        method_of(name, method)(pred.reshape(5, 1), np.zeros((3, 2)))


@name_param
@method_param
@pytest.mark.parametrize("bad", ["average", "", "SUM", "none "])
def test_bad_reduction(name, method, bad):
    pred, target = data()
    with pytest.raises(ValueError, match="reduction"):
        method_of(name, method)(pred, target, reduction=bad)


@name_param
@method_param
@pytest.mark.parametrize("bad", ["ignore", "Propagate", ""])
def test_bad_nan_policy(name, method, bad):
    pred, target = data()
    with pytest.raises(ValueError, match="nan_policy"):
        method_of(name, method)(pred, target, nan_policy=bad)


@name_param
@pytest.mark.parametrize("bad", ["newton", "EXACT", ""])
def test_bad_hessian(name, bad):
    pred, target = data()
    with pytest.raises(ValueError, match="hessian"):
        fl.losses[name].grad_hess(pred, target, hessian=bad)


def test_huber_has_no_fisher_hessian():
    pred, target = data()
    with pytest.raises(ValueError, match="fisher"):
        fl.huber.grad_hess(pred, target, hessian="fisher")


@method_param
@pytest.mark.parametrize("delta", [0.0, -1.0, -0.0, float("nan"), float("inf"), -float("inf")])
def test_bad_delta(method, delta):
    pred, target = data()
    with pytest.raises(ValueError, match="delta"):
        method_of("huber", method)(pred, target, delta=delta)


@name_param
@method_param
def test_unknown_keyword(name, method):
    pred, target = data()
    with pytest.raises(TypeError, match="no_such_option"):
        method_of(name, method)(pred, target, no_such_option=1)


@pytest.mark.parametrize("name", ["squared_error", "absolute_error", "log_cosh"])
def test_parameter_of_another_loss_is_unknown(name):
    pred, target = data()
    with pytest.raises(TypeError, match="delta"):
        fl.losses[name](pred, target, delta=1.0)


@pytest.mark.parametrize("method", ["__call__", "grad", "value_and_grad"])
def test_hessian_options_only_for_grad_hess(method):
    pred, target = data()
    with pytest.raises(TypeError, match="hessian"):
        method_of("squared_error", method)(pred, target, hessian="exact")


BAD_DTYPES = {
    "complex": lambda a: a.astype(np.complex128),
    "complex64": lambda a: a.astype(np.complex64),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "bytes": lambda a: a.astype("S8"),
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
}


@name_param
@method_param
@pytest.mark.parametrize("kind", sorted(BAD_DTYPES))
@pytest.mark.parametrize("argument", ["pred", "target", "sample_weight"])
def test_bad_dtypes(name, method, kind, argument):
    pred, target = data()
    args = {"pred": pred, "target": target, "sample_weight": np.ones_like(pred)}
    args[argument] = BAD_DTYPES[kind](args[argument])
    with pytest.raises(TypeError, match=argument):
        method_of(name, method)(args["pred"], args["target"], sample_weight=args["sample_weight"])


def test_string_arguments_rejected():
    with pytest.raises(TypeError, match="pred"):
        fl.squared_error("abc", 1.0)
    with pytest.raises(TypeError, match="target"):
        fl.squared_error(1.0, "abc")


@name_param
@method_param
def test_sample_weight_must_not_enlarge_shape(name, method):
    pred, target = data(5)
    with pytest.raises(ValueError, match="sample_weight"):
        method_of(name, method)(pred, target, sample_weight=np.ones((3, 5)))
    with pytest.raises(ValueError, match="sample_weight"):
        method_of(name, method)(pred, target, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="sample_weight"):
        method_of(name, method)(pred.reshape(5, 1), target.reshape(5, 1),
                                sample_weight=np.ones((1, 3)))


def test_sample_weight_may_broadcast():
    pred, target = np.zeros((4, 3)), np.ones((4, 3))
    for w in (np.ones(3), np.ones((4, 1)), np.ones((1, 3)), 2.0, np.array(2.0)):
        value = fl.squared_error(pred, target, sample_weight=w)
        np.testing.assert_array_equal(value, np.broadcast_to(w, (4, 3)))


# out= / grad_out= / hess_out=


@name_param
@pytest.mark.parametrize("argument, method", [
    ("out", "__call__"), ("out", "grad"), ("out", "value_and_grad"),
    ("grad_out", "value_and_grad"), ("grad_out", "grad_hess"), ("hess_out", "grad_hess"),
])
def test_out_checks(name, argument, method):
    pred, target = data(6)
    fn = method_of(name, method)

    def call(out, **kw):
        return fn(pred, target, **{argument: out}, **kw)

    with pytest.raises(ValueError, match=argument):
        call(np.empty(5))
    with pytest.raises(ValueError, match=argument):
        call(np.empty((6, 1)))
    with pytest.raises(TypeError, match=argument):
        call(np.empty(6, np.float32))
    with pytest.raises(TypeError, match=argument):
        call(np.empty(6, np.int64))
    with pytest.raises(TypeError, match=argument):
        call([0.0] * 6)
    read_only = np.empty(6)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=argument):
        call(read_only)
    # Overlapping an input, fully or partly.
    with pytest.raises(ValueError, match=argument):
        call(pred)
    with pytest.raises(ValueError, match=argument):
        call(target)
    buf = np.empty(9)
    pred_view = buf[:6]
    pred_view[:] = pred
    with pytest.raises(ValueError, match=argument):
        fn(pred_view, target, **{argument: buf[3:9]})
    weight = np.ones(6)
    with pytest.raises(ValueError, match=argument):
        fn(pred, target, sample_weight=weight, **{argument: weight})
    # A float32 computation wants float32 outputs.
    with pytest.raises(TypeError, match=argument):
        fn(pred.astype(np.float32), target, **{argument: np.empty(6)})
    # Nothing was written into the inputs.
    assert np.array_equal(pred_view, pred)
    assert np.array_equal(weight, np.ones(6))


@name_param
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("method", ["__call__", "value_and_grad"])
def test_out_only_with_reduction_none(name, reduction, method):
    pred, target = data(6)
    with pytest.raises(ValueError, match="out"):
        method_of(name, method)(pred, target, reduction=reduction, out=np.empty(6))


@name_param
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_grad_out_with_reduction(name, reduction):
    # Gradients keep pred's shape whatever the reduction, so grad_out is fine.
    pred, target = data(6)
    grad_out = np.empty(6)
    _, grad = fl.losses[name].value_and_grad(pred, target, reduction=reduction,
                                                 grad_out=grad_out)
    assert grad is grad_out
    out = np.empty(6)
    assert fl.losses[name].grad(pred, target, reduction=reduction, out=out) is out


def test_out_for_broadcast_pred_has_pred_shape():
    pred = np.zeros((3, 1))
    target = np.ones((3, 4))
    out = np.empty((3, 4))
    assert fl.squared_error(pred, target, out=out) is out
    grad_out = np.empty((3, 1))
    assert fl.squared_error.grad(pred, target, out=grad_out) is grad_out
    np.testing.assert_array_equal(grad_out, np.full((3, 1), -8.0))
    with pytest.raises(ValueError, match="out"):
        fl.squared_error.grad(pred, target, out=np.empty((3, 4)))


def test_failed_call_leaves_out_untouched():
    pred, target = data(6)
    out = np.full(6, 7.0)
    with pytest.raises(ValueError, match="reduction"):
        fl.squared_error(pred, target, out=out, reduction="bogus")
    with pytest.raises(ValueError, match="sample_weight"):
        fl.squared_error(pred, target, out=out, sample_weight=np.ones(5))
    np.testing.assert_array_equal(out, np.full(6, 7.0))


# --------------------------------------------------------------------------
# show_config and ISA selection
# --------------------------------------------------------------------------


def test_show_config_dict():
    cfg = fl.show_config(mode="dicts")
    assert isinstance(cfg, dict)
    assert {"version", "isa", "openmp", "threads", "block_size", "serial_threshold"} <= set(cfg)
    assert cfg["version"] == fl.__version__
    isa = cfg["isa"]
    assert list(isa["compiled"]) == list(fl._core.compiled_isas())
    assert list(isa["supported"]) == list(fl._core.supported_isas())
    assert "baseline" in isa["compiled"] and "baseline" in isa["supported"]
    assert set(isa["supported"]) <= set(isa["compiled"])
    assert isa["active"] == fl._core.active_isa()
    assert isa["active"] in isa["supported"]
    assert isinstance(cfg["openmp"]["enabled"], bool)
    assert isinstance(cfg["openmp"]["version"], str)
    assert isinstance(cfg["threads"], dict)
    assert isinstance(cfg["block_size"], int) and cfg["block_size"] > 0
    assert isinstance(cfg["serial_threshold"], int) and cfg["serial_threshold"] >= 0


def test_show_config_prints(capsys):
    result = fl.show_config()
    assert result is None
    printed = capsys.readouterr().out
    cfg = fl.show_config(mode="dicts")
    assert cfg["version"] in printed
    assert cfg["isa"]["active"] in printed
    assert "OpenMP" in printed or "openmp" in printed


def test_show_config_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        fl.show_config(mode="yaml")


def test_show_config_follows_set_isa():
    previous = fl._set_isa("baseline")
    try:
        assert fl.show_config(mode="dicts")["isa"]["active"] == "baseline"
    finally:
        fl._set_isa(previous)


def run_python(code, **env):
    full_env = dict(os.environ)
    full_env.pop("FASTLOSS_ISA", None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=120, check=False,
                          cwd=os.path.dirname(os.path.abspath(__file__)))


def test_fastloss_isa_bogus_is_a_clear_error():
    proc = run_python("import fastloss", FASTLOSS_ISA="bogus")
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr
    assert "FASTLOSS_ISA" in proc.stderr and "bogus" in proc.stderr
    assert "Segmentation" not in proc.stderr and "Abort" not in proc.stderr


def test_fastloss_isa_known_but_unsupported():
    unsupported = [i for i in ("avx2", "avx512") if i not in fl._core.supported_isas()]
    if not unsupported:
        pytest.skip("this CPU supports every x86 path")
    proc = run_python("import fastloss", FASTLOSS_ISA=unsupported[-1])
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr and unsupported[-1] in proc.stderr


def test_default_isa_is_the_widest_real_path():
    # The last supported entry that is not a test path (emu512, when compiled) is chosen.
    proc = run_python("import fastloss as fl; print(fl._core.active_isa())")
    assert proc.returncode == 0, proc.stderr
    supported = [i for i in fl._core.supported_isas() if i != "emu512"]
    assert proc.stdout.strip() == supported[-1]


def test_fastloss_isa_forces_each_supported_path():
    code = ("import fastloss as fl, numpy as np; print(fl._core.active_isa()); "
            "print(fl.show_config(mode='dicts')['isa']['active']); "
            "print(fl.squared_error(np.arange(5.0), 1.0, reduction='sum'))")
    for name in fl._core.supported_isas():
        proc = run_python(code, FASTLOSS_ISA=name)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.split()
        assert lines[:2] == [name, name]
        assert float(lines[2]) == 15.0


def test_losses_pickle_by_name():
    """A Loss pickles by reference, as NumPy's ufuncs do: the same object comes back, and it
    can be sent to worker processes (multiprocessing, concurrent.futures)."""
    import pickle

    for name, loss in fl.losses.items():
        for proto in (2, pickle.HIGHEST_PROTOCOL):
            assert pickle.loads(pickle.dumps(loss, protocol=proto)) is loss, name
    x = np.array([0.5, -1.0, 2.0])
    f = pickle.loads(pickle.dumps(fl.huber))
    np.testing.assert_array_equal(f(x, np.zeros(3), delta=1.0),
                                  fl.huber(x, np.zeros(3), delta=1.0))
