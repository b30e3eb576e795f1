"""``python -m sms_flow.simulator``: the same as ``sms-flow simulator``."""

from __future__ import annotations

import argparse
import sys

from sms_flow.simulator.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sms_flow.simulator",
        description="Run the SMS-compatible simulator until SIGINT or SIGTERM.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
