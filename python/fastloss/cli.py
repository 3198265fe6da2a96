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
    return int(args._run(args))


if __name__ == "__main__":
    raise SystemExit(main())
