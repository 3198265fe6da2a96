"""``python -m fastloss``: the same as the ``fastloss`` command."""

from fastloss.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
