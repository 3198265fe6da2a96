"""``fastloss score``: a loss over prediction and target files, streamed chunk by chunk.

Sources: .npy (memory-mapped), .npz (``FILE.npz`` holding one array or ``FILE.npz:KEY``),
.csv (numbers, an optional header line; one column gives a 1-D array) and .parquet (needs
pyarrow; numeric columns, or one list column, side by side). Rows are the first axis; each
chunk of ``--chunk-rows`` rows of the prediction, target and sample-weight files goes through
the in-memory loss. The sum is accumulated in float64; the mean is sum(w l) / sum(w) over the
whole data (see fastloss._chunks); class weights "balanced"/"auto" count the classes in a
first pass. The per-class breakdown groups samples by their true class: the class index of
multiclass targets (the arg-max of probability rows), the target value of integer-valued
elementwise targets (0/1 labels, -1/+1); continuous targets have none. Unweighted 0/1
labels get their per-class sums from the kernel's pass for the total (the sum over targets
equal to 1 and their count, accumulated alongside).

Ranking losses: ``margin_ranking(x1, x2, y)`` reads x2 from a third file (``--pred2``), one
value of each per sample, with the per-class breakdown by y (-1/+1). The pairwise losses
(``pairwise_logistic``, ``pairwise_hinge``) read scores and relevance per document and the
query groups from ``--group`` (one size per query, as LightGBM's and XGBoost's group) or
``--qid`` (one query id per document, non-decreasing: each query's documents contiguous, as
XGBoost requires of qid); every chunk is cut back to whole queries, the rest carried into the
next, so no query is split. Their sample weights are one per query, their mean is over
queries, as in memory.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import fastloss as fl

from . import _chunks

MAX_CLASSES = 1_000  # more distinct integer targets than this: no per-class breakdown


class ScoreError(Exception):
    """Bad input: reported as one line, exit status 2."""


# -- sources --------------------------------------------------------------------------------

@dataclass
class Source:
    name: str  # the option it came from: "pred", "target", "sample_weight"
    path: str
    rows: Optional[int]  # None when unknown before reading (CSV)
    chunks: Callable[[int], Iterator[np.ndarray]]  # at most n rows per chunk


def _split_key(path: str):
    base, sep, key = path.rpartition(":")
    if sep and base.lower().endswith(".npz"):
        return base, key
    return path, None


def open_source(path: str, name: str) -> Source:
    path, key = _split_key(path)
    if not os.path.exists(path):
        raise ScoreError(f"--{name.replace('_', '-')}: no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            return _npy(np.load(path, mmap_mode="r"), path, name)
        if ext == ".npz":
            with np.load(path) as z:
                if key is None:
                    if len(z.files) != 1:
                        raise ScoreError(f"--{name}: {path} holds {len(z.files)} arrays "
                                         f"({', '.join(z.files)}); choose one as {path}:KEY")
                    key = z.files[0]
                if key not in z.files:
                    raise ScoreError(f"--{name}: {path} has no array {key!r} "
                                     f"(it has {', '.join(z.files)})")
                return _npy(z[key], path, name)
        if ext == ".csv":
            return _csv(path, name)
        if ext == ".parquet":
            return _parquet(path, name)
    except ScoreError:
        raise
    except (ValueError, OSError) as exc:
        raise ScoreError(f"--{name}: cannot read {path}: {exc}") from None
    raise ScoreError(f"--{name}: unsupported file type {ext or '(none)'!r} of {path} "
                     "(use .npy, .npz, .csv or .parquet)")


def _npy(a: np.ndarray, path: str, name: str) -> Source:
    if a.ndim == 0:
        raise ScoreError(f"--{name}: {path} holds a scalar; need one row per sample")
    if a.dtype.kind not in "biuf":
        raise ScoreError(f"--{name}: {path} has dtype {a.dtype}; need real numbers")

    def chunks(n: int) -> Iterator[np.ndarray]:
        for i in range(0, a.shape[0], n):
            yield np.asarray(a[i:i + n])  # a view of the memory map: read as the loss goes

    return Source(name, path, int(a.shape[0]), chunks)


def _csv(path: str, name: str) -> Source:
    with open(path) as f:
        first = f.readline()
    try:
        [float(x) for x in first.strip().split(",")]
        header = False
    except ValueError:
        header = True

    def chunks(n: int) -> Iterator[np.ndarray]:
        with open(path) as f:
            if header:
                f.readline()
            while True:
                lines = [ln for ln in itertools.islice(f, n) if ln.strip()]
                if not lines:
                    return
                try:
                    a = np.loadtxt(lines, delimiter=",", ndmin=2, dtype=np.float64)
                except ValueError as exc:
                    raise ScoreError(f"--{name}: {path}: {exc}") from None
                yield a[:, 0] if a.shape[1] == 1 else a

    return Source(name, path, None, chunks)


def _parquet(path: str, name: str) -> Source:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ScoreError(f"--{name}: reading .parquet needs pyarrow "
                         "(pip install 'fastloss[parquet]')") from None
    pf = pq.ParquetFile(path)

    def to_array(batch) -> np.ndarray:
        cols = []
        for col in batch.columns:
            if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
                flat = col.flatten().to_numpy(zero_copy_only=False)
                cols.append(flat.reshape(len(col), -1))
            else:
                cols.append(col.to_numpy(zero_copy_only=False).reshape(-1, 1))
        a = cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1)
        if a.dtype.kind not in "biuf":
            raise ScoreError(f"--{name}: {path} has non-numeric columns")
        return a[:, 0] if a.shape[1] == 1 else a

    def chunks(n: int) -> Iterator[np.ndarray]:
        for batch in pf.iter_batches(batch_size=n):
            yield to_array(batch)

    return Source(name, path, int(pf.metadata.num_rows), chunks)


def aligned(sources, n: int) -> Iterator[tuple]:
    """Chunks of every source side by side; a ScoreError when their row counts differ."""
    its = [s.chunks(n) for s in sources]
    seen = [0] * len(sources)
    while True:
        parts = [next(it, None) for it in its]
        for i, p in enumerate(parts):
            if p is not None:
                seen[i] += p.shape[0]
        if all(p is None for p in parts):
            return
        if any(p is None for p in parts) or len({p.shape[0] for p in parts}) > 1:
            # Read on to report the full row counts.
            for i, it in enumerate(its):
                seen[i] += sum(c.shape[0] for c in it)
            desc = ", ".join(f"{s.name} {k:,}" for s, k in zip(sources, seen))
            raise ScoreError(f"the files have different numbers of rows: {desc}")
        yield tuple(parts)


# -- the computation ----------------------------------------------------------------------------

def _column(a: np.ndarray) -> np.ndarray:
    return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


def _match_rows(loss, pred: np.ndarray, target: np.ndarray, sw):
    """The chunks of the files, checked row by row: every file holds one row per sample, so the
    shapes of their rows must agree (broadcasting one file's rows against another's would pair
    values of different samples, differently for every chunk size). A column of shape (n, 1)
    is read as (n,) where the other file holds one value per sample."""
    if loss.kind == "rowwise":
        if pred.ndim < 2:
            raise ScoreError(f"pred: {loss.name} needs rows of class scores (a 2-D array), "
                             f"got one value per row")
        if target.ndim == pred.ndim and target.shape[-1] == 1 and pred.shape[-1] != 1:
            target = target[..., 0]  # a column of class indices
        ok = target.shape[1:] in (pred.shape[1:-1], pred.shape[1:])
        row = pred.shape[1:-1]
    else:
        if pred.shape[1:] != target.shape[1:]:
            pred, target = _column(pred), _column(target)
        ok = pred.shape[1:] == target.shape[1:]
        row = pred.shape[1:]
    if not ok:
        raise ScoreError(f"pred rows have shape {pred.shape[1:]} but target rows "
                         f"{target.shape[1:]}: each file must hold one row per sample")
    if sw is not None and sw.shape[1:] != row:
        if any(d != 1 for d in sw.shape[1:]):
            raise ScoreError(f"sample_weight rows have shape {sw.shape[1:]}; expected one "
                             f"weight per sample or rows of shape {row}")
        # One weight per sample, for every value of its row.
        sw = sw.reshape((sw.shape[0],) + (1,) * len(row))
    return pred, target, sw


def _target_for(loss, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Integer-valued float class indices (CSV, parquet) as int64 for row-wise losses."""
    if loss.kind == "rowwise" and target.dtype.kind == "f" and target.ndim == pred.ndim - 1:
        if not np.all(np.floor(target) == target):
            raise ScoreError("target: class indices must be integers")
        return target.astype(np.int64)
    return target


def _classes(loss, pred, target, ignore_index) -> Optional[np.ndarray]:
    """The true class of every value of the chunk (flattened), or None when the targets are
    not classes."""
    if loss.kind == "rowwise":
        if target.ndim == pred.ndim:  # probability rows
            return np.argmax(target, axis=-1).ravel()
        return target.ravel()
    if target.dtype.kind in "biu":
        c = target
    elif np.all(np.floor(target) == target):
        c = target.astype(np.int64)
    else:
        return None
    return np.broadcast_to(c, np.broadcast_shapes(pred.shape, target.shape)).ravel()


class _NpyWriter:
    """Appends chunks to a .npy file whose length is known only at the end (CSV input)."""

    HEADER = 128

    def __init__(self, path: str):
        self.path = path
        self.f = open(path, "wb")
        self.f.write(b"\0" * self.HEADER)
        self.dtype = None
        self.tail = None
        self.rows = 0

    def write(self, a: np.ndarray) -> None:
        if self.dtype is None:
            self.dtype, self.tail = a.dtype, a.shape[1:]
        self.f.write(np.ascontiguousarray(a, dtype=self.dtype).tobytes())
        self.rows += a.shape[0]

    def close(self) -> None:
        dtype = self.dtype if self.dtype is not None else np.dtype(np.float64)
        shape = (self.rows,) + tuple(self.tail or ())
        d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        text = repr(d).encode("latin1")
        pad = self.HEADER - 10 - len(text) - 1
        header = b"\x93NUMPY\x01\x00" + (self.HEADER - 10).to_bytes(2, "little") + text \
            + b" " * pad + b"\n"
        self.f.seek(0)
        self.f.write(header)
        self.f.close()


def _parse_value(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        v = json.loads(text)
    except ValueError:
        return text
    return v if not isinstance(v, (list, dict)) else (
        np.asarray(v, dtype=np.float64) if isinstance(v, list) else
        {int(k): float(x) for k, x in v.items()})


def parse_params(items) -> dict:
    params = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ScoreError(f"--param: expected KEY=VALUE, got {item!r}")
        params[key.strip()] = _parse_value(value)
    return params


def _progress(total, disable: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="rows", unit_scale=True, desc="scoring", file=sys.stderr,
                disable=disable, dynamic_ncols=True)


class _Sink:
    """Where a scoring pass's results go besides the sums: the per-sample file (when asked
    for) and the progress bar (when tqdm is installed and it is wanted)."""

    def __init__(self, per_sample: Optional[str], total_rows, progress: bool):
        self.writer = _NpyWriter(per_sample) if per_sample is not None else None
        self.out_dtype = None
        self.bar = _progress(total_rows, not progress)

    def write(self, v) -> None:
        if self.writer is not None:
            self.writer.write(np.asarray(v))
            self.out_dtype = v.dtype

    def advance(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def score(loss_name: str, pred_path: str, target_path: str, *, params=None,
          sample_weight_path: Optional[str] = None, per_sample: Optional[str] = None,
          chunk_rows: Optional[int] = None, progress: bool = True,
          per_class: bool = True, pred2_path: Optional[str] = None,
          group_path: Optional[str] = None, qid_path: Optional[str] = None) -> dict:
    if loss_name not in fl.losses:
        raise ScoreError(f"--loss: unknown loss {loss_name!r}; `fastloss list` shows "
                         f"{', '.join(sorted(fl.losses))}")
    loss = fl.losses[loss_name]
    if loss.kind not in ("elementwise", "rowwise", "margin_ranking", "pairwise"):
        raise ScoreError(f"--loss: {loss_name} (kind {loss.kind!r}) is not supported by "
                         "`fastloss score`")
    params = dict(params or {})
    for key in params:
        if key not in loss.params:
            raise ScoreError(f"--param: {loss_name} has no parameter {key!r} "
                             f"(it has: {', '.join(loss.params) or 'none'})")
    if (pred2_path is None) != (loss.kind != "margin_ranking"):
        raise ScoreError("--pred2: margin_ranking needs x2 in --pred2 (--pred holds x1)"
                         if pred2_path is None else
                         f"--pred2: only margin_ranking takes a second score file, not "
                         f"{loss_name}")
    if loss.kind != "pairwise" and (group_path is not None or qid_path is not None):
        raise ScoreError(f"--{'group' if group_path is not None else 'qid'}: query groups are "
                         f"for the pairwise ranking losses, not {loss_name}")
    if group_path is not None and qid_path is not None:
        raise ScoreError("--group and --qid: give one of them (group sizes or query ids)")
    if loss.kind == "margin_ranking":
        return _score_margin(loss, params, pred_path, pred2_path, target_path,
                             sample_weight_path, per_sample, chunk_rows, progress, per_class)
    if loss.kind == "pairwise":
        return _score_pairwise(loss, params, pred_path, target_path, group_path, qid_path,
                               sample_weight_path, per_sample, chunk_rows, progress)
    sources = [open_source(pred_path, "pred"), open_source(target_path, "target")]
    if sample_weight_path is not None:
        sources.append(open_source(sample_weight_path, "sample_weight"))
    _check_same_rows(sources)
    total_rows = sources[0].rows
    if chunk_rows is None:
        chunk_rows = _auto_chunk_rows(sources[0])
    start = time.perf_counter()
    ignore_index = _chunks.ignore_index_of(loss, params)

    def parts():
        for chunk in aligned(sources, chunk_rows):
            pred, target, sw = _match_rows(loss, chunk[0], chunk[1],
                                           chunk[2] if len(chunk) > 2 else None)
            yield pred, _target_for(loss, pred, target), sw

    # First pass: class counts for class_weight / alpha = "balanced" or "auto".
    n_counted = None
    if _chunks.counted_params(loss, params):
        counts = None
        counting = _Sink(None, total_rows, progress)
        try:
            for pred, target, sw in parts():
                n_counted = _chunks.n_counted(loss, pred.shape[-1] if pred.ndim > 1 else 1)
                c = _chunks.class_counts(loss, pred, target, sw, ignore_index, False, n_counted)
                counts = c if counts is None else counts + c
                counting.advance(pred.shape[0])
        finally:
            counting.close()
        if counts is None:
            raise ScoreError("the files hold no rows")
        params = _chunks.resolve_counted(loss, params, counts, n_counted, ignore_index)

    total = 0.0
    denom = 0.0
    count = 0
    ignored = 0  # rows of ignore_index, left out of the reported count
    want_classes = per_class
    per_class: Optional[dict] = {} if want_classes else None
    sink = _Sink(per_sample, total_rows, progress)
    cw = None
    split_ok = True  # 0/1 targets so far: per-class sums from one kernel pass
    try:
        for pred, target, sw in parts():
            if cw is None:
                n = _chunks.n_counted(loss, pred.shape[-1] if pred.ndim > 1 else 1)
                cw = _chunks.class_weights_of(loss, params, n, ignore_index)
                cw = False if cw is None else cw
            split = None
            if (per_class is not None and sink.writer is None and sw is None and cw is False
                    and split_ok and loss.kind == "elementwise" and pred.shape == target.shape
                    and target.dtype.kind in "biuf"):
                # The common case, 0/1 labels without weights: one kernel pass that writes
                # nothing and sums the loss over all samples and over the positives. Other
                # targets take the general path below (and this one is not tried again).
                try:
                    split = loss._class_split_sum(pred, target, **params)
                except (ValueError, TypeError) as exc:
                    raise ScoreError(str(exc)) from None
                if split[3]:
                    split_ok = False
                    split = None
            if split is not None:
                s_all, s_pos, n_pos, _ = split
                n_all = int(target.size)
                total += s_all
                denom += n_all
                count += n_all
                for c, (n_c, s_c) in ((0, (n_all - n_pos, s_all - s_pos)), (1, (n_pos, s_pos))):
                    if n_c:
                        prev = per_class.get(c, (0, 0.0, 0.0))
                        per_class[c] = (prev[0] + n_c, prev[1] + s_c, prev[2] + n_c)
                sink.advance(pred.shape[0])
                continue
            classes = _classes(loss, pred, target, ignore_index) if per_class is not None \
                else None
            if classes is None:
                per_class = None
            need_values = sink.writer is not None or per_class is not None
            weighted = sw is not None or cw is not False or loss.kind == "rowwise"
            try:
                if need_values:
                    v = loss(pred, target, sample_weight=sw, **params)
                    total += float(np.sum(v, dtype=np.float64))
                else:
                    v = None
                    total += float(loss(pred, target, sample_weight=sw, reduction="sum",
                                        **params))
            except (ValueError, TypeError) as exc:
                raise ScoreError(str(exc)) from None
            w = None
            if weighted or per_class is not None:
                w = _chunks.effective_weights(loss.kind, pred, target, sw,
                                              None if cw is False else cw, ignore_index, False)
                denom += float(np.sum(w, dtype=np.float64))
            else:
                denom += float(np.prod(np.broadcast_shapes(pred.shape, target.shape)))
            n_values = int(np.prod(v.shape)) if v is not None else int(
                np.prod(np.broadcast_shapes(pred.shape, target.shape)) if loss.kind ==
                "elementwise" else np.prod(pred.shape[:-1]))
            if loss.kind == "rowwise":
                # Ignored rows are not scored: the count is of the rows the mean is over.
                ignored += _chunks.ignored_rows(pred, target, ignore_index)
            count += n_values
            if per_class is not None and loss.kind == "elementwise" and _is_binary(classes):
                _add_binary(per_class, classes, np.asarray(v).ravel(),
                            np.broadcast_to(w, np.shape(v)).ravel())
            elif per_class is not None:
                _add_classes(per_class, classes, np.asarray(v, dtype=np.float64).ravel(),
                             np.broadcast_to(w, np.shape(v)).ravel(), ignore_index
                             if loss.kind == "rowwise" else None)
                if len(per_class) > MAX_CLASSES:
                    per_class = None
            sink.write(v)
            sink.advance(pred.shape[0])
    finally:
        sink.close()
    if count == 0:
        raise ScoreError("the files hold no rows")
    return _result(loss_name, params, total, denom, count - ignored, per_class, start,
                   per_sample, sink.out_dtype)


def _result(loss_name, params, total, denom, count, per_class, start, per_sample, out_dtype):
    result = {
        "loss": loss_name,
        "params": {k: _jsonable(v) for k, v in params.items()},
        "mean": total / denom if denom != 0 else math.nan,
        "sum": total,
        "count": count,
        "per_class": None,
        "seconds": time.perf_counter() - start,
    }
    if per_class is not None:
        result["per_class"] = {
            str(c): {"count": int(n), "sum": s, "mean": (s / ws if ws != 0 else math.nan)}
            for c, (n, s, ws) in sorted(per_class.items())}
    if per_sample is not None:
        result["per_sample"] = {"path": per_sample, "dtype": str(out_dtype)}
    return result


# -- ranking losses -----------------------------------------------------------------------------

def _check_same_rows(sources) -> None:
    for s in sources[1:]:
        if s.rows is not None and sources[0].rows is not None and s.rows != sources[0].rows:
            raise ScoreError(f"the files have different numbers of rows: {sources[0].name} "
                             f"{sources[0].rows:,}, {s.name} {s.rows:,}")


def _one_per_row(a: np.ndarray, name: str) -> np.ndarray:
    a = _column(a)
    if a.ndim != 1:
        raise ScoreError(f"{name}: expected one value per row, got rows of shape {a.shape[1:]}")
    return a


def _score_margin(loss, params, pred_path, pred2_path, target_path, sample_weight_path,
                  per_sample, chunk_rows, progress, want_classes) -> dict:
    """margin_ranking(x1, x2, y): three files of one value per sample, chunk by chunk; the
    mean is sum(w l) / sum(w) (the number of samples without weights), as in memory."""
    sources = [open_source(pred_path, "pred"), open_source(pred2_path, "pred2"),
               open_source(target_path, "target")]
    if sample_weight_path is not None:
        sources.append(open_source(sample_weight_path, "sample_weight"))
    _check_same_rows(sources)
    if chunk_rows is None:
        chunk_rows = CHUNK_ELEMENTS
    start = time.perf_counter()
    total = denom = 0.0
    count = 0
    per_class: Optional[dict] = {} if want_classes else None
    sink = _Sink(per_sample, sources[0].rows, progress)
    try:
        for chunk in aligned(sources, chunk_rows):
            x1, x2, y = (_one_per_row(a, s.name) for a, s in zip(chunk[:3], sources))
            sw = _one_per_row(chunk[3], "sample_weight") if len(chunk) > 3 else None
            classes = _classes(loss, x1, y, None) if per_class is not None else None
            if classes is None:
                per_class = None
            try:
                if sink.writer is not None or per_class is not None:
                    v = loss(x1, x2, y, sample_weight=sw, **params)
                    total += float(np.sum(v, dtype=np.float64))
                else:
                    v = None
                    total += float(loss(x1, x2, y, sample_weight=sw, reduction="sum", **params))
            except (ValueError, TypeError) as exc:
                raise ScoreError(str(exc)) from None
            # The denominator as the kernel reads the weights: rounded to the compute dtype.
            w = (np.ones(x1.shape[0]) if sw is None
                 else np.asarray(sw).astype(_chunks.compute_dtype(x1)).astype(np.float64))
            denom += float(np.sum(w, dtype=np.float64))
            count += x1.shape[0]
            if per_class is not None:
                _add_classes(per_class, classes, np.asarray(v, dtype=np.float64).ravel(), w, None)
                if len(per_class) > MAX_CLASSES:
                    per_class = None
            sink.write(v)
            sink.advance(x1.shape[0])
    finally:
        sink.close()
    if count == 0:
        raise ScoreError("the files hold no rows")
    return _result(loss.name, params, total, denom, count, per_class, start, per_sample,
                   sink.out_dtype)


def _whole_source(path: str, name: str) -> np.ndarray:
    """All rows of a small file (group sizes, query weights) as one 1-D array."""
    src = open_source(path, name)
    parts = [_one_per_row(c, f"--{name.replace('_', '-')}") for c in src.chunks(1 << 22)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _integers(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype.kind == "f":
        if not np.all(np.floor(a) == a):
            raise ScoreError(f"{what}: must hold integers")
        return a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise ScoreError(f"{what}: must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _score_pairwise(loss, params, pred_path, target_path, group_path, qid_path,
                    sample_weight_path, per_sample, chunk_rows, progress) -> dict:
    """A pairwise ranking loss over documents, whole queries at a time: the chunks of the
    document files are cut back to the last query they hold in full (the rest waits for the
    next chunk), so that each call sees whole queries; per-query values, sum and mean as the
    in-memory call over all of them."""
    docs = [open_source(pred_path, "pred"), open_source(target_path, "target")]
    if qid_path is not None:
        docs.append(open_source(qid_path, "qid"))
    _check_same_rows(docs)
    sizes = None
    if group_path is not None:
        sizes = _integers(_whole_source(group_path, "group"), "--group")
        if sizes.size and sizes.min() < 0:
            raise ScoreError(f"--group: group sizes must be >= 0, got {sizes.min()}")
        if docs[0].rows is not None and int(sizes.sum()) != docs[0].rows:
            raise ScoreError(f"--group: the group sizes sum to {int(sizes.sum()):,}, but "
                             f"--pred holds {docs[0].rows:,} documents")
    qweights = None
    if sample_weight_path is not None:
        qweights = _whole_source(sample_weight_path, "sample_weight")
    if chunk_rows is None:
        chunk_rows = CHUNK_ELEMENTS
    start = time.perf_counter()
    total = denom = 0.0
    n_queries = 0
    sink = _Sink(per_sample, docs[0].rows, progress)
    # Documents read but not scored yet, as a list of chunks' (scores, relevance) pieces
    # joined only when queries are complete: a query longer than many chunks is copied once.
    pend: list = []
    n_pend = 0
    done = 0         # documents scored (all before the pending ones)
    g_next = 0       # with sizes: the next query's index
    ends = np.cumsum(sizes) if sizes is not None else None  # with sizes: each query's end
    last_qid = None  # with qid: the id of the last document read
    read_any = False

    def run(s, r, group_sizes):
        nonlocal total, denom, n_queries
        ng = group_sizes.shape[0]
        sw = None
        if qweights is not None:
            if n_queries + ng > qweights.shape[0]:
                raise ScoreError(f"--sample-weight: holds {qweights.shape[0]:,} weights, one "
                                 f"per query, but the files hold more queries")
            sw = qweights[n_queries:n_queries + ng]
        try:
            if sink.writer is not None:
                v = loss(s, r, group=group_sizes, sample_weight=sw, **params)
                total += float(np.sum(v, dtype=np.float64))
                sink.write(v)
            else:
                total += float(loss(s, r, group=group_sizes, sample_weight=sw,
                                    reduction="sum", **params))
        except (ValueError, TypeError) as exc:
            raise ScoreError(str(exc)) from None
        if sw is None:
            denom += float(ng)
        else:  # as the kernel reads the weights: rounded to the compute dtype
            denom += float(np.sum(np.asarray(sw).astype(_chunks.compute_dtype(s)),
                                  dtype=np.float64))
        n_queries += ng

    def take(used):
        """The first `used` pending documents, joined; the rest stays pending."""
        nonlocal pend, n_pend, done
        s_all = pend[0][0] if len(pend) == 1 else np.concatenate([p[0] for p in pend])
        r_all = pend[0][1] if len(pend) == 1 else np.concatenate([p[1] for p in pend])
        pend = [(s_all[used:], r_all[used:])] if used < s_all.shape[0] else []
        n_pend = s_all.shape[0] - used
        done += used
        return s_all[:used], r_all[:used]

    try:
        for chunk in aligned(docs, chunk_rows):
            read_any = True
            parts = [_one_per_row(a, src.name) for a, src in zip(chunk, docs)]
            m = parts[0].shape[0]
            group_sizes = None
            if sizes is not None:
                # The queries that end within what has been read: ends[g_next:g_end].
                g_end = int(np.searchsorted(ends, done + n_pend + m, side="right"))
                group_sizes = sizes[g_next:g_end]
                used = (int(ends[g_end - 1]) - done) if g_end > g_next else 0
                g_next = g_end
            elif qid_path is not None:
                q = _integers(parts[2], "--qid")
                if q.size and ((last_qid is not None and q[0] < last_qid)
                               or np.any(q[1:] < q[:-1])):
                    raise ScoreError("--qid: query ids must be non-decreasing (each query's "
                                     "documents contiguous, as XGBoost requires of qid): sort "
                                     "the files by qid, or give --group sizes")
                # Where a query starts within this chunk (at 0 when the pending one ends
                # there); every query before the last start is complete.
                starts = np.flatnonzero(q[1:] != q[:-1]) + 1
                if q.size and n_pend and q[0] != last_qid:
                    starts = np.concatenate(([0], starts))
                if q.size:
                    last_qid = q[-1]
                if starts.size:
                    bounds = np.concatenate(([0], n_pend + starts))
                    group_sizes = np.diff(bounds).astype(np.int64)  # each > 0
                    used = int(bounds[-1])
            pend.append((parts[0], parts[1]))
            n_pend += m
            if group_sizes is not None and group_sizes.size:  # (queries of 0 documents too)
                s_run, r_run = take(used) if used else (parts[0][:0], parts[1][:0])
                run(s_run, r_run, group_sizes)
            sink.advance(m)
        # The end of the files: what is pending is the last query (or queries).
        if not read_any:
            raise ScoreError("the files hold no rows")
        if sizes is not None:
            rest = sizes[g_next:]
            if int(rest.sum()) != n_pend:
                raise ScoreError(f"--group: the group sizes sum to {int(sizes.sum()):,}, but "
                                 f"--pred holds a different number of documents")
            if rest.size:
                run(*take(n_pend), rest)
        elif n_pend:
            last = np.array([n_pend], dtype=np.int64)  # (before take() empties n_pend)
            run(*take(n_pend), last)
        if qweights is not None and n_queries != qweights.shape[0]:
            raise ScoreError(f"--sample-weight: holds {qweights.shape[0]:,} weights, one per "
                             f"query, but the files hold {n_queries:,} queries")
    finally:
        sink.close()
    if n_queries == 0:
        raise ScoreError("the files hold no rows")
    return _result(loss.name, params, total, denom, n_queries, None, start, per_sample,
                   sink.out_dtype)


CHUNK_ELEMENTS = 1 << 24  # default chunk: 16 Mi prediction values (64 MB of float32)


def _auto_chunk_rows(pred: Source) -> int:
    """Rows per chunk for CHUNK_ELEMENTS prediction values: large enough that the per-call
    cost (threads woken, results combined) is small next to the work, small enough to bound
    memory."""
    per_row = 1
    for first in pred.chunks(1):
        per_row = max(1, int(np.prod(first.shape[1:])))
        break
    return max(1, CHUNK_ELEMENTS // per_row)


def _is_binary(classes) -> bool:
    return classes.size > 0 and int(classes.min()) >= 0 and int(classes.max()) <= 1


def _add_binary(acc: dict, classes, values, weights) -> None:
    """Per-class sums of 0/1 classes as dot products (one fused pass each)."""
    t = classes.astype(values.dtype, copy=False)
    n1 = int(np.count_nonzero(classes))
    s_all = float(np.sum(values, dtype=np.float64))
    s1 = float(np.dot(values.astype(np.float64, copy=False), t.astype(np.float64, copy=False)))
    w_all = float(np.sum(weights, dtype=np.float64))
    w1 = float(np.dot(weights, t.astype(np.float64, copy=False)))
    for c, (n, s_, w_) in ((0, (classes.size - n1, s_all - s1, w_all - w1)), (1, (n1, s1, w1))):
        if n:
            prev = acc.get(c, (0, 0.0, 0.0))
            acc[c] = (prev[0] + n, prev[1] + s_, prev[2] + w_)


def _add_classes(acc: dict, classes, values, weights, ignore_index) -> None:
    if ignore_index is not None:
        keep = classes != ignore_index
        classes, values, weights = classes[keep], values[keep], weights[keep]
    if classes.size == 0:
        return
    lo = int(classes.min())
    idx = classes.astype(np.int64) - lo
    n = np.bincount(idx)
    s = np.bincount(idx, weights=values)
    ws = np.bincount(idx, weights=weights)
    for i in np.flatnonzero(n):
        c = int(i) + lo
        prev = acc.get(c, (0, 0.0, 0.0))
        acc[c] = (prev[0] + int(n[i]), prev[1] + float(s[i]), prev[2] + float(ws[i]))


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _finite_or_none(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def to_json(result: dict) -> str:
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return _finite_or_none(o)

    return json.dumps(clean(result), allow_nan=False)


def to_text(result: dict) -> str:
    lines = [f"loss   {result['loss']}"]
    if result["params"]:
        lines.append("params " + ", ".join(f"{k}={v}" for k, v in result["params"].items()))
    lines += [f"count  {result['count']:,}", f"sum    {result['sum']:.10g}",
              f"mean   {result['mean']:.10g}"]
    pc = result["per_class"]
    if pc:
        lines.append("per class (true class: count, mean loss):")
        width = max(len(c) for c in pc)
        for c, d in pc.items():
            lines.append(f"  {c:>{width}}  {d['count']:>14,}  {d['mean']:.10g}")
    lines.append(f"time   {result['seconds']:.3f} s "
                 f"({result['count'] / max(result['seconds'], 1e-9) / 1e6:.1f} M values/s)")
    if "per_sample" in result:
        lines.append(f"per-sample losses written to {result['per_sample']['path']}")
    return "\n".join(lines)


def list_losses() -> list:
    out = []
    for name, loss in fl.losses.items():
        out.append({"name": name, "family": loss.family, "kind": loss.kind,
                    "params": {k: _jsonable(v) for k, v in loss.params.items()},
                    "formula": loss.formula})
    return out
