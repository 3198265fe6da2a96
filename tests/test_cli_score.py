"""`fastloss score` and `fastloss list` through subprocess, on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import fastloss as fl


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "fastloss", *args], capture_output=True,
                          text=True, timeout=300, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def score_json(*args):
    out = run("score", "--json", "--no-progress", *args).stdout
    return json.loads(out)


@pytest.fixture
def binary_files(tmp_path, rng):
    n = 10_007
    pred = rng.normal(size=n).astype(np.float32)
    target = (rng.random(n) < 0.2).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n)
    np.save(tmp_path / "pred.npy", pred)
    np.save(tmp_path / "target.npy", target)
    np.save(tmp_path / "w.npy", w)
    return tmp_path, pred, target, w


def test_npy_binary_with_weights_and_per_class(binary_files):
    d, pred, target, w = binary_files
    res = score_json("--loss", "sigmoid_cross_entropy", "--pred", str(d / "pred.npy"),
                     "--target", str(d / "target.npy"), "--sample-weight", str(d / "w.npy"),
                     "--param", "pos_weight=2.5", "--chunk-rows", "999")
    kw = dict(sample_weight=w, pos_weight=2.5)
    assert res["loss"] == "sigmoid_cross_entropy" and res["count"] == pred.size
    assert res["mean"] == pytest.approx(float(fl.sigmoid_cross_entropy(pred, target,
                                                                       reduction="mean", **kw)),
                                        rel=1e-12)
    assert res["sum"] == pytest.approx(float(fl.sigmoid_cross_entropy(pred, target,
                                                                      reduction="sum", **kw)),
                                       rel=1e-12)
    values = fl.sigmoid_cross_entropy(pred, target, **kw).astype(np.float64)
    for c in (0, 1):
        sel = target == c
        got = res["per_class"][str(c)]
        assert got["count"] == int(sel.sum())
        assert got["mean"] == pytest.approx(values[sel].sum() / w[sel].sum(), rel=1e-9)


@pytest.mark.parametrize("loss", ["sigmoid_cross_entropy", "sigmoid_focal", "squared_error"])
def test_per_class_of_unweighted_zero_one_labels(binary_files, loss):
    # The one-pass per-class sums (0/1 labels, no weights) against a per-sample computation.
    d, pred, target, _ = binary_files
    res = score_json("--loss", loss, "--pred", str(d / "pred.npy"), "--target",
                     str(d / "target.npy"), "--chunk-rows", "2500")
    values = fl.losses[loss](pred, target).astype(np.float64)
    assert res["mean"] == pytest.approx(values.mean(), rel=1e-6)
    for c in (0, 1):
        sel = target == c
        got = res["per_class"][str(c)]
        assert got["count"] == int(sel.sum())
        assert got["mean"] == pytest.approx(values[sel].mean(), rel=1e-6)


def test_per_class_falls_back_when_a_chunk_is_not_zero_one(tmp_path, rng):
    # squared_error on 0/1 targets for the first chunk, then a target of 0.5: the later
    # chunks take the general path, and no class appears for the non-integer target.
    n = 3000
    pred = rng.normal(size=n)
    target = (rng.random(n) < 0.3).astype(np.float64)
    target[2500] = 0.5
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "t.npy", target)
    res = score_json("--loss", "squared_error", "--pred", str(tmp_path / "p.npy"), "--target",
                     str(tmp_path / "t.npy"), "--chunk-rows", "1000")
    assert res["mean"] == pytest.approx(float(np.mean((pred - target) ** 2)), rel=1e-12)
    assert res["count"] == n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_class_split_sum_kernel(rng, dtype, threads):
    # The kernel's 0/1 class split of the value sum, across block and vector boundaries and
    # with a broadcast target, against the per-sample values.
    n = 3 * 8192 + 13
    pred = rng.normal(size=n).astype(dtype)
    target = (rng.random(n) < 0.25).astype(dtype)
    with fl.threads(threads):
        s, s1, n1, other = fl.sigmoid_focal._class_split_sum(pred, target, gamma=1.5)
    v = fl.sigmoid_focal(pred, target, gamma=1.5).astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert s == pytest.approx(v.sum(), rel=rtol)
    assert s1 == pytest.approx(v[target == 1].sum(), rel=rtol)
    assert n1 == int((target == 1).sum()) and other is False
    # The total is the sum reduction's, bit for bit.
    assert s == float(fl.sigmoid_focal(pred, target, gamma=1.5, reduction="sum"))
    p2 = pred[: 2 * 7].reshape(2, 7)
    t2 = np.array([1, 0, 1, 1, 0, 0, 1], dtype=dtype)
    s, s1, n1, other = fl.squared_error._class_split_sum(p2, t2)
    v2 = (p2.astype(np.float64) - t2) ** 2
    assert s1 == pytest.approx(v2[:, t2 == 1].sum(), rel=rtol) and n1 == 8 and not other
    for bad in (np.array([0.0, 1.0, 0.5]), np.array([0.0, 1.0, np.nan]), np.array([2.0, 1.0, 1.0])):
        assert fl.squared_error._class_split_sum(np.zeros(3, dtype), bad.astype(dtype))[3]


def test_no_per_class(binary_files):
    d, pred, target, _ = binary_files
    res = score_json("--loss", "sigmoid_focal", "--pred", str(d / "pred.npy"), "--target",
                     str(d / "target.npy"), "--no-per-class", "--param", "gamma=0.5")
    assert res["per_class"] is None
    assert res["mean"] == pytest.approx(float(fl.sigmoid_focal(pred, target, gamma=0.5,
                                                               reduction="mean")), rel=1e-12)


def test_class_weight_balanced_counts_the_whole_file(binary_files):
    d, pred, target, _ = binary_files
    res = score_json("--loss", "sigmoid_cross_entropy", "--pred", str(d / "pred.npy"),
                     "--target", str(d / "target.npy"), "--class-weight", "balanced",
                     "--chunk-rows", "500")
    want = fl.sigmoid_cross_entropy(pred, target, reduction="mean", class_weight="balanced")
    assert res["mean"] == pytest.approx(float(want), rel=1e-12)
    np.testing.assert_allclose(res["params"]["class_weight"],
                               fl.class_weight(target.astype(int), "balanced"), rtol=1e-12)


def test_multiclass_csv_npz_parquet_and_per_sample(tmp_path, rng):
    n, k = 3_001, 5
    logits = rng.normal(size=(n, k))
    y = rng.integers(0, k, n)
    np.savez(tmp_path / "logits.npz", logits=logits, other=np.zeros(3))
    np.savetxt(tmp_path / "y.csv", y, fmt="%d", header="label", comments="")
    out = tmp_path / "per_sample.npy"
    res = score_json("--loss", "softmax_cross_entropy", "--pred",
                     f"{tmp_path / 'logits.npz'}:logits", "--target", str(tmp_path / "y.csv"),
                     "--param", "label_smoothing=0.1", "--param", "class_weight=[1,2,1,1,3]",
                     "--per-sample", str(out), "--chunk-rows", "700")
    kw = dict(label_smoothing=0.1, class_weight=np.array([1.0, 2, 1, 1, 3]))
    assert res["mean"] == pytest.approx(float(fl.softmax_cross_entropy(logits, y,
                                                                       reduction="mean", **kw)),
                                        rel=1e-12)
    per = np.load(out)
    np.testing.assert_array_equal(per, fl.softmax_cross_entropy(logits, y, **kw))
    assert sum(v["count"] for v in res["per_class"].values()) == n

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({f"c{j}": logits[:, j] for j in range(k)}), tmp_path / "x.parquet",
                   row_group_size=1_000)
    pq.write_table(pa.table({"y": y}), tmp_path / "y.parquet")
    res2 = score_json("--loss", "softmax_cross_entropy", "--pred", str(tmp_path / "x.parquet"),
                      "--target", str(tmp_path / "y.parquet"), "--param", "label_smoothing=0.1",
                      "--param", "class_weight=[1,2,1,1,3]", "--chunk-rows", "800")
    assert res2["mean"] == pytest.approx(res["mean"], rel=1e-12)
    for c, v in res["per_class"].items():
        assert res2["per_class"][c]["count"] == v["count"]
        assert res2["per_class"][c]["mean"] == pytest.approx(v["mean"], rel=1e-12)


def test_regression_has_no_per_class_and_text_output(tmp_path, rng):
    pred, target = rng.normal(size=5_000), rng.normal(size=5_000)
    np.save(tmp_path / "p.npy", pred)
    np.savetxt(tmp_path / "t.csv", target, delimiter=",")
    res = score_json("--loss", "huber", "--pred", str(tmp_path / "p.npy"), "--target",
                     str(tmp_path / "t.csv"), "--param", "delta=0.5")
    assert res["per_class"] is None
    assert res["mean"] == pytest.approx(float(fl.huber(pred, target, delta=0.5,
                                                       reduction="mean")), rel=1e-12)
    proc = run("score", "--loss", "huber", "--pred", str(tmp_path / "p.npy"), "--target",
               str(tmp_path / "t.csv"))
    assert "mean" in proc.stdout and "count  5,000" in proc.stdout
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return
    assert "rows" in proc.stderr and "100%" in proc.stderr  # the progress bar, on stderr


@pytest.mark.parametrize("args, message", [
    (["--loss", "huber", "--pred", "MISSING.npy", "--target", "t.npy"], "no such file"),
    (["--loss", "hubr", "--pred", "p.npy", "--target", "t.npy"], "unknown loss 'hubr'"),
    (["--loss", "huber", "--pred", "p.npy", "--target", "t.npy", "--param", "delt=1"],
     "no parameter 'delt'"),
    (["--loss", "huber", "--pred", "p.npy", "--target", "t.npy", "--param", "delta"],
     "KEY=VALUE"),
    (["--loss", "huber", "--pred", "p.npy", "--target", "short.npy"], "different numbers of rows"),
    (["--loss", "huber", "--pred", "p.npy", "--target", "wide.npy"], "broadcast|shape"),
    (["--loss", "huber", "--pred", "p.npy", "--target", "t.npy", "--param", "delta=-1"],
     "delta"),
    (["--loss", "softmax_cross_entropy", "--pred", "wide.npy", "--target", "bad_labels.npy"],
     "class index 7"),
    (["--loss", "huber", "--pred", "p.txt", "--target", "t.npy"], "unsupported file type"),
])
def test_bad_input_one_line_and_nonzero_exit(tmp_path, args, message):
    np.save(tmp_path / "p.npy", np.zeros(100))
    np.save(tmp_path / "t.npy", np.zeros(100))
    np.save(tmp_path / "short.npy", np.zeros(99))
    np.save(tmp_path / "wide.npy", np.zeros((100, 3)))
    np.save(tmp_path / "bad_labels.npy", np.full(100, 7))
    (tmp_path / "p.txt").write_text("1\n")
    args = [str(tmp_path / a) if a.endswith((".npy", ".txt")) else a for a in args]
    proc = run("score", "--no-progress", *args, check=False)
    assert proc.returncode == 2
    import re

    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastloss score: error:")
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("chunk_rows", ["3", "7", "40"])
def test_files_pair_rows_not_broadcast(tmp_path, rng, chunk_rows):
    """Every file holds one row per sample: a column (n, 1) is read as (n,), a per-sample
    weight file applies to every value of its row, and rows of other shapes are refused
    (broadcasting one chunk against another would pair values of different samples)."""
    n = 40
    pred = rng.normal(size=n)
    target = (rng.random(n) < 0.4).astype(np.float64)
    wide_pred = rng.normal(size=(n, 3))
    wide_target = (rng.random((n, 3)) < 0.4).astype(np.float64)
    w = rng.uniform(0.5, 2.0, n)
    for name, a in [("p", pred), ("tcol", target[:, None]), ("wp", wide_pred),
                    ("wt", wide_target), ("w", w), ("wcol", w[:, None]), ("t", target)]:
        np.save(tmp_path / f"{name}.npy", a)
    f = {k: str(tmp_path / f"{k}.npy") for k in ("p", "tcol", "wp", "wt", "w", "wcol", "t")}
    sce = fl.sigmoid_cross_entropy
    got = score_json("--loss", "sigmoid_cross_entropy", "--pred", f["p"], "--target",
                     f["tcol"], "--sample-weight", f["wcol"], "--chunk-rows", chunk_rows)
    assert got["count"] == n
    assert got["mean"] == pytest.approx(float(sce(pred, target, sample_weight=w,
                                                  reduction="mean")), rel=1e-12)
    for wf in (f["w"], f["wcol"]):
        got = score_json("--loss", "sigmoid_cross_entropy", "--pred", f["wp"], "--target",
                         f["wt"], "--sample-weight", wf, "--chunk-rows", chunk_rows)
        assert got["count"] == 3 * n
        assert got["mean"] == pytest.approx(float(sce(wide_pred, wide_target,
                                                      sample_weight=w[:, None],
                                                      reduction="mean")), rel=1e-12)
    for p, t in ((f["p"], f["wt"]), (f["wp"], f["t"]), (f["wp"], f["tcol"])):
        proc = run("score", "--no-progress", "--loss", "sigmoid_cross_entropy", "--pred", p,
                   "--target", t, "--chunk-rows", chunk_rows, check=False)
        assert proc.returncode == 2
        assert "one row per sample" in proc.stderr, proc.stderr


def test_csv_and_npy_give_the_same_result(tmp_path, rng):
    pred = rng.normal(size=(2_000, 2))  # multi-label: two labels per sample
    target = (rng.random((2_000, 2)) < 0.3).astype(np.float64)
    np.save(tmp_path / "p.npy", pred)
    np.savetxt(tmp_path / "p.csv", pred, delimiter=",", header="a,b", comments="")
    np.savetxt(tmp_path / "t.csv", target, delimiter=",", fmt="%d")
    a = score_json("--loss", "sigmoid_cross_entropy", "--pred", str(tmp_path / "p.npy"),
                   "--target", str(tmp_path / "t.csv"), "--chunk-rows", "333")
    b = score_json("--loss", "sigmoid_cross_entropy", "--pred", str(tmp_path / "p.csv"),
                   "--target", str(tmp_path / "t.csv"))
    assert a["count"] == b["count"] == pred.size
    assert a["mean"] == pytest.approx(float(fl.sigmoid_cross_entropy(pred, target,
                                                                     reduction="mean")),
                                      rel=1e-12)
    assert b["mean"] == pytest.approx(a["mean"], rel=1e-12)


def test_list_prints_every_loss():
    out = run("list").stdout
    for name, loss in fl.losses.items():
        assert name in out
        assert loss.formula in out
    entries = json.loads(run("list", "--json").stdout)
    assert [e["name"] for e in entries] == list(fl.losses)
    huber = next(e for e in entries if e["name"] == "huber")
    assert huber["params"] == {"delta": 1.0}


def test_ignored_rows_are_left_out_of_the_count(tmp_path, rng):
    n, k = 500, 4
    logits = rng.normal(size=(n, k))
    y = rng.integers(0, k, n)
    y[::7] = -100
    np.save(tmp_path / "x.npy", logits)
    np.save(tmp_path / "y.npy", y)
    res = score_json("--loss", "softmax_cross_entropy", "--pred", str(tmp_path / "x.npy"),
                     "--target", str(tmp_path / "y.npy"), "--chunk-rows", "120")
    kept = int(np.count_nonzero(y != -100))
    assert res["count"] == kept
    assert res["mean"] == pytest.approx(res["sum"] / kept, rel=1e-12)
    assert sum(v["count"] for v in res["per_class"].values()) == kept
    # The same targets as probability rows, with ignore_index a class: its one-hot rows are
    # left out of the mean and of the count alike.
    y2 = np.where(y == -100, 0, y)
    np.save(tmp_path / "t.npy", np.eye(k)[y2])
    np.save(tmp_path / "y2.npy", y2)
    args = ("--loss", "softmax_cross_entropy", "--pred", str(tmp_path / "x.npy"),
            "--param", "ignore_index=0", "--chunk-rows", "120")
    by_index = score_json(*args, "--target", str(tmp_path / "y2.npy"))
    by_prob = score_json(*args, "--target", str(tmp_path / "t.npy"))
    kept0 = int(np.count_nonzero(y2 != 0))
    assert by_index["count"] == by_prob["count"] == kept0
    assert by_prob["mean"] == pytest.approx(by_index["mean"], rel=1e-12)


# ---- ranking losses -----------------------------------------------------------------------

@pytest.mark.parametrize("chunk_rows", ["7", "1000000"])
def test_margin_ranking_three_files(tmp_path, rng, chunk_rows):
    n = 1_003
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    y = np.where(rng.random(n) < 0.3, 1.0, -1.0)
    w = rng.uniform(0.5, 2.0, n)
    for name, a in (("x1", x1), ("x2", x2), ("y", y), ("w", w)):
        np.save(tmp_path / f"{name}.npy", a)
    out = tmp_path / "values.npy"
    r = score_json("--loss", "margin_ranking", "--pred", str(tmp_path / "x1.npy"),
                   "--pred2", str(tmp_path / "x2.npy"), "--target", str(tmp_path / "y.npy"),
                   "--sample-weight", str(tmp_path / "w.npy"), "--param", "margin=0.5",
                   "--chunk-rows", chunk_rows, "--per-sample", str(out))
    loss = fl.margin_ranking
    values = loss(x1, x2, y, sample_weight=w, margin=0.5)
    np.testing.assert_array_equal(np.load(out), values)
    assert r["count"] == n
    assert r["sum"] == pytest.approx(float(np.sum(values)), rel=1e-12)
    assert r["mean"] == pytest.approx(float(loss(x1, x2, y, sample_weight=w, margin=0.5,
                                                 reduction="mean")), rel=1e-12)
    # Per class of y: the weighted mean of each side, computed here.
    for c in (-1, 1):
        m = y == c
        got = r["per_class"][str(c)]
        assert got["count"] == int(m.sum())
        assert got["mean"] == pytest.approx(float(values[m].sum() / w[m].sum()), rel=1e-12)


def _ranking_data(rng, sizes):
    n = int(np.sum(sizes))
    scores = rng.normal(size=n).astype(np.float32)
    rel = rng.integers(0, 4, n).astype(np.float32)
    return scores, rel


@pytest.mark.parametrize("chunk_rows", ["1", "5", "13", "100000"])
def test_pairwise_with_group_sizes_keeps_queries_whole(tmp_path, rng, chunk_rows):
    """Query sizes of 0 to 40 (so that queries straddle every chunk boundary, and chunks hold
    no whole query): per-query values, sum and mean as the in-memory call."""
    sizes = rng.integers(0, 41, 60)
    sizes[[0, 7, -1]] = 0
    scores, rel = _ranking_data(rng, sizes)
    w = rng.uniform(0.5, 2.0, sizes.size)
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "r.npy", rel)
    np.save(tmp_path / "g.npy", sizes)
    np.save(tmp_path / "w.npy", w)
    out = tmp_path / "values.npy"
    r = score_json("--loss", "pairwise_logistic", "--pred", str(tmp_path / "s.npy"),
                   "--target", str(tmp_path / "r.npy"), "--group", str(tmp_path / "g.npy"),
                   "--sample-weight", str(tmp_path / "w.npy"), "--param", "sigma=2",
                   "--chunk-rows", chunk_rows, "--per-sample", str(out))
    loss = fl.pairwise_logistic
    per_query = loss(scores, rel, group=sizes, sample_weight=w, sigma=2.0)
    np.testing.assert_array_equal(np.load(out), per_query)
    assert r["count"] == sizes.size
    assert r["sum"] == pytest.approx(float(np.sum(per_query, dtype=np.float64)), rel=1e-6)
    assert r["mean"] == pytest.approx(float(loss(scores, rel, group=sizes, sample_weight=w,
                                                 sigma=2.0, reduction="mean")), rel=1e-6)
    assert r["per_class"] is None


@pytest.mark.parametrize("chunk_rows", ["3", "64"])
def test_pairwise_with_qid_per_document_values(tmp_path, rng, chunk_rows):
    sizes = rng.integers(1, 12, 30)
    ids = np.cumsum(rng.integers(1, 5, sizes.size))  # increasing, with gaps
    qid = np.repeat(ids, sizes)
    scores, rel = _ranking_data(rng, sizes)
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "r.npy", rel)
    np.save(tmp_path / "q.npy", qid)
    out = tmp_path / "values.npy"
    r = score_json("--loss", "pairwise_hinge", "--pred", str(tmp_path / "s.npy"),
                   "--target", str(tmp_path / "r.npy"), "--qid", str(tmp_path / "q.npy"),
                   "--param", "value_per=document", "--param", "margin=0.5",
                   "--chunk-rows", chunk_rows, "--per-sample", str(out))
    loss = fl.pairwise_hinge
    per_doc = loss(scores, rel, qid=qid, value_per="document", margin=0.5)
    np.testing.assert_array_equal(np.load(out), per_doc)
    assert r["count"] == sizes.size  # the mean is over queries
    assert r["mean"] == pytest.approx(float(loss(scores, rel, qid=qid, margin=0.5,
                                                 reduction="mean")), rel=1e-6)


def test_pairwise_without_groups_is_one_query(tmp_path, rng):
    scores, rel = _ranking_data(rng, [57])
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "r.npy", rel)
    r = score_json("--loss", "pairwise_logistic", "--pred", str(tmp_path / "s.npy"),
                   "--target", str(tmp_path / "r.npy"), "--chunk-rows", "10")
    assert r["count"] == 1
    assert r["sum"] == pytest.approx(float(fl.pairwise_logistic(scores, rel,
                                                                reduction="sum")), rel=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--loss", "margin_ranking"], "--pred2"),
    (["--loss", "huber", "--pred2", "s.npy"], "only margin_ranking"),
    (["--loss", "huber", "--group", "g.npy"], "pairwise ranking losses"),
    (["--loss", "pairwise_logistic", "--group", "g.npy", "--qid", "q.npy"], "one of them"),
    (["--loss", "pairwise_logistic", "--qid", "down.npy"], "non-decreasing"),
    (["--loss", "pairwise_logistic", "--group", "short_g.npy"], "sum to 9"),
    (["--loss", "pairwise_logistic", "--group", "g.npy", "--sample-weight", "w3.npy"],
     "one per query"),
    (["--loss", "pairwise_logistic", "--group", "neg_g.npy"], ">= 0"),
])
def test_ranking_bad_input(tmp_path, extra, message):
    import re

    np.save(tmp_path / "s.npy", np.zeros(10))
    np.save(tmp_path / "r.npy", np.zeros(10))
    np.save(tmp_path / "g.npy", np.array([4, 6]))
    np.save(tmp_path / "short_g.npy", np.array([4, 5]))
    np.save(tmp_path / "neg_g.npy", np.array([12, -2]))
    np.save(tmp_path / "q.npy", np.repeat([1, 2], 5))
    np.save(tmp_path / "down.npy", np.repeat([2, 1], 5))
    np.save(tmp_path / "w3.npy", np.ones(3))
    args = ["--pred", str(tmp_path / "s.npy"), "--target", str(tmp_path / "r.npy")]
    args += [str(tmp_path / a) if a.endswith(".npy") else a for a in extra]
    proc = run("score", "--no-progress", *args, check=False)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.search(message, lines[0]), lines[0]


def test_nan_in_data_is_reported(binary_files):
    d, pred, target, _ = binary_files
    bad = pred.copy()
    bad[17] = np.nan
    np.save(d / "bad.npy", bad)
    proc = run("score", "--json", "--no-progress", "--loss", "sigmoid_cross_entropy",
               "--pred", str(d / "bad.npy"), "--target", str(d / "target.npy"))
    res = json.loads(proc.stdout)
    assert res["sum"] is None and res["mean"] is None and res["count"] == pred.size
    assert "warning: the sum is NaN" in proc.stderr
    clean = run("score", "--json", "--no-progress", "--loss", "sigmoid_cross_entropy",
                "--pred", str(d / "pred.npy"), "--target", str(d / "target.npy"))
    assert "warning" not in clean.stderr


def test_list_into_a_closed_pipe_exits_quietly():
    # `fastloss list | head -1`: the reader is gone; no BrokenPipeError traceback. The pipe's
    # read end is closed before the command starts, so its first write fails for sure.
    import os

    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "fastloss", "list"], stdout=w,
                              stderr=subprocess.PIPE, timeout=120, check=False)
    finally:
        os.close(w)
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
