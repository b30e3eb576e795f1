"""``python -m benchmarks``: run the benchmarks, print the table, write ``benchmarks/results.json``.

::

    python -m benchmarks                 # everything, full size (what make bench runs)
    python -m benchmarks --quick         # everything scaled down: a smoke run of well under a minute
    python -m benchmarks --only B1,B3    # some of them
    python -m benchmarks --b3-sources 500 --repeat 1   # one size by hand

Each benchmark's module docstring says what it measures. The table gives, per figure, the
baselines measured in the same run and the ratio figure / baseline, the target and whether it
is met. Figures of a scaled-down run are judged against the target after scaling linearly
where the target is per source (B2, B5) or per entry (B10's time); rates are judged as
measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._common import SHARED_CORES_NOTE, Figure, load_average, machine_info

_DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"
_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11")


def _sizes(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Keyword arguments of each benchmark's ``run``: full size, ``--quick``, or given."""
    quick = args.quick
    repeat = args.repeat
    sizes: dict[str, dict[str, Any]] = {
        "B1": {"checks": 20_000 if quick else 200_000, "repeat": repeat or (3 if quick else 5)},
        "B2": {
            "sources": 10_000 if quick else 100_000,
            "baseline_sources": 1_000 if quick else 10_000,
            "repeat": repeat or 3,
        },
        "B3": {
            "sources": 200 if quick else 2_000,
            "concurrency": args.concurrency,
            "repeat": repeat or (1 if quick else 3),
            "sdk_threads": args.sdk_threads or ((16,) if quick else (4, 16, 64)),
            "sdk_calibration_sources": 50 if quick else 200,
        },
        "B4": {
            "sources": 200 if quick else 2_000,
            "concurrency": args.concurrency,
            "repeat": repeat or (1 if quick else 3),
        },
        "B5": {"intents": 600 if quick else 10_000, "repeat": repeat or 1},
        "B6": {"runs": 10 if quick else 30, "cold_runs": 1 if quick else 3},
        "B7": {
            "sources": 200 if quick else 2_000,
            "concurrency": args.concurrency,
            "repeat": repeat or (1 if quick else 3),
        },
        "B8": {"sources": 600 if quick else 10_000, "solo": 200 if quick else 2_000},
        "B9": {
            "checks": 2_000 if quick else 20_000,
            "sources": 64 if quick else 400,
            "concurrency": args.concurrency,
            "repeat": repeat or (1 if quick else 3),
        },
        "B10": {"entries": 10_000 if quick else 100_000, "repeat": repeat or 1},
        "B11": {"sources": 5_000 if quick else 100_000, "repeat": repeat or (2 if quick else 5)},
    }
    overrides = {
        ("B1", "checks"): args.b1_checks,
        ("B2", "sources"): args.b2_sources,
        ("B2", "baseline_sources"): args.b2_baseline_sources,
        ("B3", "sources"): args.b3_sources,
        ("B4", "sources"): args.b4_sources,
        ("B5", "intents"): args.b5_intents,
        ("B6", "runs"): args.b6_runs,
        ("B7", "sources"): args.b7_sources,
        ("B8", "sources"): args.b8_sources,
        ("B8", "solo"): args.b8_solo,
        ("B9", "checks"): args.b9_checks,
        ("B9", "sources"): args.b9_sources,
        ("B10", "entries"): args.b10_entries,
        ("B11", "sources"): args.b11_sources,
    }
    for (bench, key), value in overrides.items():
        if value is not None:
            sizes[bench][key] = value
    return sizes


def _runner(bench: str) -> Callable[..., list[Figure]]:
    # Imported on demand: B3 needs the official SDK, which --only B1 should not.
    if bench == "B1":
        from benchmarks.b1_check import run
    elif bench == "B2":
        from benchmarks.b2_tracking import run
    elif bench == "B3":
        from benchmarks.b3_push import run
    elif bench == "B4":
        from benchmarks.b4_wave import run
    elif bench == "B5":
        from benchmarks.b5_recovery import run
    elif bench == "B6":
        from benchmarks.b6_startup import run
    elif bench == "B7":
        from benchmarks.b7_pg_journal import run
    elif bench == "B8":
        from benchmarks.b8_workers import run
    elif bench == "B9":
        from benchmarks.b9_gateway import run
    elif bench == "B10":
        from benchmarks.b10_history import run
    else:
        from benchmarks.b11_dashboard import run
    return run


# -- the table -----------------------------------------------------------------------------------


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def _ratio(value: float | None, better: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}x"
    if better == "lower" and 0 < value < 1:
        text += f" ({1 / value:,.0f}x less)"
    return text


def table(figures: Sequence[Figure]) -> str:
    """The results as a fixed-width table, one line per (figure, baseline)."""
    head = ("id", "figure", "value", "unit", "baseline", "baseline value", "ratio", "target", "met")
    rows: list[tuple[str, ...]] = []
    for f in figures:
        met = "n/a" if f.met is None else ("yes" if f.met else "NO")
        first = (f.id, f.what, _num(f.value), f.unit)
        if not f.baselines:
            rows.append((*first, "(none)", "", "", f.target, met))
        for i, b in enumerate(f.baselines):
            lead = first if i == 0 else ("", "", "", "")
            tail = (f.target, met) if i == 0 else ("", "")
            rows.append((*lead, b.name, _num(b.value), _ratio(b.ratio, f.better), *tail))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    right = {2, 5, 6}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(r) for r in rows)])


# -- main ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run sms-flow's benchmarks against their baselines; print a table, write JSON.",
    )
    p.add_argument("--quick", action="store_true", help="scale every benchmark down (smoke run)")
    p.add_argument("--only", metavar="IDS", help="comma-separated benchmark ids to run, e.g. B1,B3")
    p.add_argument(
        "--json",
        type=Path,
        default=_DEFAULT_JSON,
        metavar="PATH",
        help="where the results go (default: benchmarks/results.json)",
    )
    p.add_argument("--repeat", type=int, metavar="N", help="runs per side (best counts)")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed (default: exit 0)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="sources (requests) in flight in B3, B4, B7 and B9 (default 64)",
    )
    p.add_argument(
        "--sdk-threads",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        metavar="N,N",
        help="thread counts to try for the official SDK in B3 (default 4,16,64)",
    )
    sizes = p.add_argument_group("sizes (override --quick or the full size)")
    sizes.add_argument("--b1-checks", type=int, metavar="N")
    sizes.add_argument("--b2-sources", type=int, metavar="N")
    sizes.add_argument("--b2-baseline-sources", type=int, metavar="N")
    sizes.add_argument("--b3-sources", type=int, metavar="N", help="5 pushes each")
    sizes.add_argument("--b4-sources", type=int, metavar="N")
    sizes.add_argument("--b5-intents", type=int, metavar="N")
    sizes.add_argument("--b6-runs", type=int, metavar="N", help="timed runs of each side")
    sizes.add_argument("--b7-sources", type=int, metavar="N", help="5 pushes each, per journal")
    sizes.add_argument(
        "--b8-sources", type=int, metavar="N", help="the wave of the three workers (B8)"
    )
    sizes.add_argument("--b8-solo", type=int, metavar="N", help="the lone worker's wave (B8)")
    sizes.add_argument(
        "--b9-checks", type=int, metavar="N", help="POST /api/v1/check requests per side"
    )
    sizes.add_argument(
        "--b9-sources", type=int, metavar="N", help="sources walked through the gateway"
    )
    sizes.add_argument("--b10-entries", type=int, metavar="N", help="journal entries of the wave")
    sizes.add_argument(
        "--b11-sources", type=int, metavar="N", help="sources in the journal (1 to 5 entries each)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wanted = [s.strip().upper() for s in args.only.split(",")] if args.only else list(_IDS)
    unknown = [w for w in wanted if w not in _IDS]
    if unknown:
        print(f"unknown benchmark id(s): {', '.join(unknown)}; known: {', '.join(_IDS)}")
        return 2

    from sms_flow.log import ensure_configured

    ensure_configured()  # as the CLI does; unconfigured, structlog would print debug lines
    sizes = _sizes(args)
    machine = machine_info()
    started = time.perf_counter()
    print(
        f"sms-flow benchmarks{' (--quick)' if args.quick else ''}: {machine['nproc']} cores, "
        f"{machine['cpu']}, {machine['memory']}, Python {machine['python']}; "
        f"load average {machine['load_average'][0]:.2f}",
        flush=True,
    )
    busy = machine["load_average"][0] > 0.5 * (machine["nproc"] or 1)
    if busy:
        print(
            "  warning: the machine is busy with other work; every figure that involves the "
            "simulator will come out low (see load_average_before in the JSON)",
            flush=True,
        )
    figures: list[Figure] = []
    timings: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for bench in wanted:
        load = load_average()[0]
        print(f"  {bench} {sizes[bench]} ... ", end="", flush=True)
        t0 = time.perf_counter()
        try:
            got = _runner(bench)(**sizes[bench])
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            elapsed = time.perf_counter() - t0
            errors[bench] = "".join(traceback.format_exception(exc))
            timings[bench] = {"seconds": round(elapsed, 2), "load_average_before": load}
            print(f"FAILED after {elapsed:.1f} s: {type(exc).__name__}: {exc}", flush=True)
            continue
        elapsed = time.perf_counter() - t0
        timings[bench] = {"seconds": round(elapsed, 2), "load_average_before": load}
        figures.extend(got)
        print(f"{elapsed:.1f} s", flush=True)
    total = time.perf_counter() - started

    print()
    print(table(figures))
    print()
    print(f"Note: {SHARED_CORES_NOTE} (B3, B4, B5).")
    print(f"Took {total:.1f} s.")
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "sizes": sizes,
        "seconds": round(total, 2),
        "benchmarks": timings,
        "note": SHARED_CORES_NOTE,
        "figures": [f.to_dict() for f in figures],
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"Wrote {args.json}.")
    missed = [f"{f.id} {f.what}" for f in figures if f.met is False]
    if missed:
        print(f"Missed: {'; '.join(missed)}.")
    for bench, text in errors.items():
        print(f"\n{bench} failed:\n{text}", file=sys.stderr)
    if errors:
        return 2
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
