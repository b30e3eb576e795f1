"""An operator's requested state changes, checked and explained before anything is sent.

Run: python examples/validate_request.py [FROM TO ...]

Without arguments it checks a few typical requests. Each answer says whether the change is
allowed (and by which trigger) or why not, with the shortest legal path when one exists.
"""

from __future__ import annotations

import sys

from sms_flow import (
    Planner,
    ReasonCode,
    UnknownValueError,
    default_chart,
    parse_pair,
    parse_request,
)

REQUESTS = [
    # (where the source is now, what the operator asks for)
    ("SYNCING/syncing", "CUTOVERING/cutovering"),  # launch the target: allowed
    ("WAITING/checking", "FINISHED/cutovered"),  # skip the whole migration: rejected, with a path
    ("STOPPED/syncing", "SYNCING"),  # the service ignores changestate while STOPPED
    ("cleared/cutovered", "WAITING/cutovered"),  # the API page's own example
    ("INIT/replicating", "SYNCING/checking"),  # SYNCING never goes with checking
    ("SYNCING/syncing", "CUTOVER"),  # a typo
]


def main(argv: list[str]) -> int:
    pairs = list(zip(argv[::2], argv[1::2], strict=False)) if argv else REQUESTS
    planner = Planner(default_chart())
    rejected = 0
    for current_text, requested_text in pairs:
        try:
            current, requested = parse_pair(current_text), parse_request(requested_text)
        except UnknownValueError as exc:
            print(f"{current_text} → {requested_text}: bad input: {exc}\n")
            rejected += 1
            continue
        verdict = planner.check(current, requested)
        print(verdict.explain())
        if not verdict.allowed:
            rejected += 1
            if ReasonCode.FROZEN in verdict.codes:
                print("  → the service would answer 200 and change nothing; wait for it instead")
            for step in verdict.path:
                who = "push" if step.pushable else f"wait ({step.by.value})"
                print(f"  {who:>14}: {step.trigger:<10} {step.source} → {step.dest}")
        print()
    print(f"{len(pairs) - rejected} allowed, {rejected} rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
