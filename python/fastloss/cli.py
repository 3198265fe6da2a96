"""Command-line interface: ``fastloss <subcommand> ...`` (also ``python -m fastloss``).

Every subcommand is one function registered with :func:`subcommand` in the
``SUBCOMMANDS`` dict, together with the function that declares its options. The
parser is built from that dict, so adding a subcommand is one decorated
function and never touches :func:`main`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main", "subcommand"]


@dataclass(frozen=True)
class Subcommand:
    """A registered subcommand: ``run(args) -> exit status`` and its options."""

    run: Callable[[argparse.Namespace], int]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(
    name: str,
    *,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register the decorated ``run(args) -> int`` as ``fastloss <name>``."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        SUBCOMMANDS[name] = Subcommand(run, help, add_arguments or (lambda parser: None))
        return run

    return register


# --------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------


def _count(text: str, minimum: int) -> int:
    """An integer >= minimum; accepts 10_000_000 and 1e7 as well as 10000000."""
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not number.is_integer():
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        value = int(number)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _count(text, 1)


def _non_negative_int(text: str) -> int:
    return _count(text, 0)


# --------------------------------------------------------------------------
# fastloss demo
# --------------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size", type=_positive_int, default=10_000_000, metavar="N",
        help="number of samples per loss (default: 10_000_000)",
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default="float64",
        help="floating-point type of the inputs (default: float64)",
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=None, metavar="N",
        help="threads for fastloss (default: fastloss.get_num_threads())",
    )
    parser.add_argument(
        "--seed", type=_non_negative_int, default=0, metavar="S",
        help="seed of the random inputs (default: 0)",
    )
    parser.add_argument(
        "--repeat", type=_positive_int, default=3, metavar="R",
        help="time each computation R times and keep the fastest (default: 3)",
    )


@subcommand(
    "demo",
    help="time every loss against NumPy and check that the results agree",
    add_arguments=_demo_arguments,
)
def _run_demo(args: argparse.Namespace) -> int:
    from fastloss import _demo

    return _demo.run(
        size=args.size, dtype=args.dtype, threads=args.threads, seed=args.seed, repeat=args.repeat
    )


# --------------------------------------------------------------------------
# fastloss score
# --------------------------------------------------------------------------


def _score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loss", required=True, metavar="NAME",
                        help="the loss (`fastloss list` shows them)")
    parser.add_argument("--pred", required=True, metavar="FILE",
                        help="predictions: .npy (memory-mapped), .npz[:KEY], .csv or .parquet; "
                             "one row per sample (logits [n, K] for multiclass losses)")
    parser.add_argument("--target", required=True, metavar="FILE",
                        help="targets, same formats and number of rows")
    parser.add_argument("--sample-weight", metavar="FILE", default=None,
                        help="optional sample weights, one per row (one per query for the "
                             "pairwise losses)")
    parser.add_argument("--pred2", metavar="FILE", default=None,
                        help="margin_ranking only: x2, the second score of each pair (--pred "
                             "holds x1, --target y = +1/-1)")
    parser.add_argument("--group", metavar="FILE", default=None,
                        help="pairwise losses: query group sizes, one per query, in document "
                             "order (LightGBM's and XGBoost's group)")
    parser.add_argument("--qid", metavar="FILE", default=None,
                        help="pairwise losses: one query id per document, non-decreasing "
                             "(XGBoost's qid); without --group or --qid all documents are "
                             "one query")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a loss parameter, e.g. delta=0.5 or pos_weight=3 (repeatable; "
                             "lists as JSON: class_weight=[1,2,3])")
    parser.add_argument("--class-weight", choices=("balanced", "auto"), default=None,
                        help="class weights counted over the whole target file (first pass)")
    parser.add_argument("--per-sample", metavar="OUT.npy", default=None,
                        help="also write the per-sample losses to OUT.npy")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: loss, params, mean, sum, count, per_class")
    parser.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="N",
                        help="rows read and scored at a time (default: 16,777,216 prediction "
                             "values' worth of rows)")
    parser.add_argument("--no-per-class", action="store_true",
                        help="skip the per-class breakdown (free for unweighted 0/1 labels; "
                             "other targets need per-sample values)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (shown on stderr when tqdm is installed)")


@subcommand(
    "score",
    help="score prediction files against target files, streamed in chunks",
    add_arguments=_score_arguments,
)
def _run_score(args: argparse.Namespace) -> int:
    import sys

    from fastloss import _score

    try:
        params = _score.parse_params(args.param)
        if args.class_weight is not None:
            params["class_weight"] = args.class_weight
        result = _score.score(args.loss, args.pred, args.target, params=params,
                              sample_weight_path=args.sample_weight, per_sample=args.per_sample,
                              chunk_rows=args.chunk_rows, progress=not args.no_progress,
                              per_class=not args.no_per_class, pred2_path=args.pred2,
                              group_path=args.group, qid_path=args.qid)
    except (_score.ScoreError, ValueError, TypeError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"fastloss score: error: {message}", file=sys.stderr)
        return 2
    print(_score.to_json(result) if args.json else _score.to_text(result))
    if result["sum"] != result["sum"]:  # NaN (null in --json): say why, on stderr
        print("fastloss score: warning: the sum is NaN: the data hold NaN (or inf - inf); "
              "the losses propagate it, as NumPy does", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# fastloss list
# --------------------------------------------------------------------------


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list")


@subcommand("list", help="print every loss with its parameters and formula",
            add_arguments=_list_arguments)
def _run_list(args: argparse.Namespace) -> int:
    import json

    from fastloss import _score

    entries = _score.list_losses()
    if args.json:
        print(json.dumps(entries))
        return 0
    for e in entries:
        ps = ", ".join(f"{k}={v!r}" for k, v in e["params"].items())
        print(f"{e['name']}({ps})" if ps else e["name"])
        print(f"    {e['family']}, {e['kind']}: {e['formula']}")
    return 0


# --------------------------------------------------------------------------
# fastloss plot
# --------------------------------------------------------------------------


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "figure", choices=("focal", "power"),
        help="focal: loss against p_t for cross-entropy and focal loss (gamma 0, 0.5, 1, 2, 5); "
        "power: how p^n moves the decision threshold, and its loss",
    )
    parser.add_argument(
        "-o", "--output", default=None, metavar="FILE",
        help="image file to write, format from its suffix (default: <figure>.png)",
    )
    parser.add_argument(
        "--dpi", type=_positive_int, default=120, metavar="D",
        help="resolution of raster images (default: 120)",
    )


@subcommand(
    "plot",
    help="draw a figure of the class-imbalance losses (needs matplotlib: the 'plot' extra)",
    add_arguments=_plot_arguments,
)
def _run_plot(args: argparse.Namespace) -> int:
    from fastloss import _plot

    output = args.output if args.output is not None else f"{args.figure}.png"
    return _plot.run(args.figure, output, dpi=args.dpi)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("fastloss")
    except Exception:  # not installed as a distribution (e.g. run from a build tree)
        import fastloss

        return str(getattr(fastloss, "__version__", "unknown"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastloss",
        description="Fast loss functions with gradients and Hessians over NumPy arrays.",
    )
    parser.add_argument("--version", action="version", version=f"fastloss {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, command in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastloss`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except BrokenPipeError:
        # The reader went away (`fastloss list | head`): stop quietly, as the shell tools do.
        # stdout is pointed at devnull so that Python's flush at exit does not raise again.
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it


if __name__ == "__main__":
    raise SystemExit(main())
