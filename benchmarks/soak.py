"""The soak: faults and concurrent actors, judged by the simulator's histories and the journal.

``python -m benchmarks.soak`` (``--sources N`` per scenario, ``--seeds 1,2,3``, ``--json PATH``)
runs, for each seed, one simulator process with faults on (5xx, 429, dropped connections,
changes applied then answered 503, latency) and one journal, and on it, at the same time, as
operators run them (``sms-flow`` in child processes):

* **two runs of one wave started at once** (scenario A): one runs, the other is refused;
* **a ``set`` during a wave** (B): plain ``set`` on sources the wave holds (refused), then
  ``set --force --reason`` on a few, which take the next step of the main path themselves;
* **two waves sharing sources** (C): each drives what it claims first, and skips the rest.

Then every wave is run once more (resuming what was refused, stopped or failed under the
faults) and ``sms-flow recover`` settles what is still open. The judge reads every source's
history from the simulator (``GET /_simulator/sources/{id}/history``) and every entry of the
journal, and counts:

* **duplicated steps**: a client move ``from → to`` applied more than once to a source;
* **backward moves**: a client move to a state earlier on the main path than where it was;
* **steps that override another actor**: a client move whose journal intent starts from
  another state than the one the service had (pushed from a stale belief);
* **applied changes recorded as failed**: a client move whose only journal entries say
  failed, ignored or conflict;

and, beside them, pushes no journal entry accounts for, entries still open (pending or
unverified) at the end, and what each actor's exit status was. Exit status 0 when the four
counts are 0 for every seed, 1 otherwise. ``--small`` is the size the test suite runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import simulator
from sms_flow.chart import default_chart
from sms_flow.planner import Planner
from sms_flow.states import parse_pair

MAIN = [
    "WAITING/checking",
    "WAITING/setting",
    "INIT/replicating",
    "REPLICATE/replicating",
    "CUTOVERING/cutovering",
    "FINISHED/cutovered",
]
"""The main path's states, in order: a move to an earlier one is backward."""
RANK = {state: i for i, state in enumerate(MAIN)}
FAULTS = (
    "--error-rate", "0.03", "--throttle-rate", "0.03", "--retry-after", "0.05",
    "--drop-rate", "0.02", "--apply-then-fail-rate", "0.05",
    "--latency", "0.002", "--latency-jitter", "0.01",
)  # fmt: skip
SMS_FLOW = (sys.executable, "-m", "sms_flow")


@dataclass
class Verdict:
    """What the judge found for one seed."""

    seed: int
    sources: int
    duplicated_steps: int = 0
    backward_moves: int = 0
    overrides: int = 0
    applied_recorded_failed: int = 0
    unjournalled_pushes: int = 0
    open_entries: int = 0
    at_target: int = 0
    client_moves: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    exits: dict[str, list[int]] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (
            self.duplicated_steps
            or self.backward_moves
            or self.overrides
            or self.applied_recorded_failed
            or self.unjournalled_pushes
        )


class Actors:
    """``sms-flow`` child processes against one simulator and one journal."""

    def __init__(self, url: str, journal: Path, folder: Path) -> None:
        self.url = url
        self.journal = journal
        self.folder = folder
        self.exits: dict[str, list[int]] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_FLOW_", "CLOUD_SDK_"))}
        env.update(SMS_FLOW_ENDPOINT=url, SMS_FLOW_JOURNAL=str(journal), SMS_FLOW_LOG_LEVEL="error")
        self.env = env

    def wave(
        self, name: str, ids: Sequence[str], concurrency: int = 8, rate: float | None = None
    ) -> Path:
        path = self.folder / f"{name}.yaml"
        spec: dict[str, Any] = {"name": name, "endpoint": self.url, "sources": {"ids": list(ids)}}
        spec["concurrency"] = concurrency
        if rate is not None:
            spec["rate_limit"] = rate
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        return path

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*SMS_FLOW, *args],
            env=self.env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, name: str, wave: Path) -> subprocess.Popen[str]:
        return self.start("run", str(wave), "--no-progress", "--json")

    def finish(self, what: str, proc: subprocess.Popen[str]) -> int:
        out, err = proc.communicate(timeout=900)
        self.exits.setdefault(what, []).append(proc.returncode)
        if proc.returncode not in (0, 1, 5):  # 1: a source failed under the faults
            shown = (err.strip() or out.strip())[-500:]
            print(f"  {what} exited {proc.returncode}: {shown}", file=sys.stderr)
        return proc.returncode


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def _applied(journal: Path, wave: str) -> int:
    if not journal.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(journal, timeout=10)) as conn:
            return int(
                conn.execute(
                    "SELECT count(*) FROM entries WHERE wave = ? AND outcome = 'applied'", (wave,)
                ).fetchone()[0]
            )
    except sqlite3.OperationalError:  # being created
        return 0


def _wait_for(predicate: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the soak waited too long for a wave to get going")
        time.sleep(0.05)


def drive(seed: int, per_scenario: int, folder: Path) -> Verdict:
    """Run the three scenarios on one simulator and journal, then judge."""
    rng = random.Random(seed)
    started = time.monotonic()
    n = per_scenario
    with simulator(4 * n, auth=False, extra=(*FAULTS, "--seed", str(seed))) as sim:
        ids = list(sim.ids)
        a, b, c = ids[:n], ids[n : 2 * n], ids[2 * n : 4 * n]
        c1, c2 = c[: n + n // 2], c[n // 2 :]  # half of each shared
        journal = folder / "journal.sqlite"
        actors = Actors(sim.url, journal, folder)
        waves = {
            # Spaced out too: the two runs of A start together and must overlap (a process
            # starting late on a loaded machine must not find the first one done already).
            "soak-a": actors.wave("soak-a", a, concurrency=2, rate=max(5.0, n / 2)),
            # Spaced out, so that the operator's sets come while it drives its sources.
            "soak-b": actors.wave("soak-b", b, concurrency=2, rate=max(5.0, n / 2)),
            "soak-c1": actors.wave("soak-c1", c1),
            "soak-c2": actors.wave("soak-c2", c2),
        }
        running = [
            ("A: first run", actors.run("soak-a", waves["soak-a"])),
            ("A: second run", actors.run("soak-a", waves["soak-a"])),
            ("B: wave", actors.run("soak-b", waves["soak-b"])),
            ("C: first wave", actors.run("soak-c1", waves["soak-c1"])),
            ("C: second wave", actors.run("soak-c2", waves["soak-c2"])),
        ]
        # B: once the wave is under way, an operator sets sources it has not reached yet
        # (plain set: refused while the wave owns them), then takes two over with --force.
        _wait_for(lambda: _applied(journal, "soak-b") >= 2)
        picked = rng.sample(b[-4:], k=4)  # the wave reaches these last
        for forced, chosen in ((False, picked), (True, picked[:2])):
            sets = []
            for sid in chosen:
                target = _next_state(sim.url, sid)
                if target is not None:
                    extra = ("--force", "--reason", f"soak seed {seed}") if forced else ()
                    sets.append(actors.start("set", sid, *target, *extra))
            for proc in sets:
                actors.finish("B: set --force" if forced else "B: set", proc)
        for what, proc in running:
            actors.finish(what, proc)
        # Resume every wave once (refused, stopped, failed under faults), then recover.
        for name, wave in waves.items():
            actors.finish(f"resume {name}", actors.run(name, wave))
        actors.finish("recover", actors.start("recover", "--json"))
        verdict = judge(seed, sim.url, ids, journal)
        verdict.exits = actors.exits
        verdict.faults = dict(_get(f"{sim.url}/_simulator/stats").get("faults", {}))
    verdict.seconds = round(time.monotonic() - started, 1)
    return verdict


_PLANNER = Planner(default_chart())


def _next_state(url: str, sid: str) -> tuple[str, ...] | None:
    """The options of ``set`` that take the source's next step on its way to the target."""
    src = _get(f"{url}/_simulator/sources/{sid}")
    current = parse_pair(f"{src['copystate']}/{src['migrationcycle']}")
    plan = _PLANNER.plan(current, "FINISHED/cutovered")
    if not plan.found or not plan.steps:
        return None
    dest = plan.steps[0].dest
    return ("--copystate", dest.copystate.value, "--migrationcycle", dest.migrationcycle.value)


def judge(seed: int, url: str, ids: list[str], journal: Path) -> Verdict:
    """Count what the simulator's histories and the journal show (see the module docstring)."""
    verdict = Verdict(seed, len(ids))
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        rows = conn.execute(
            "SELECT id, source_id, from_state, to_state, outcome, created_at, settled_at, actor "
            "FROM entries ORDER BY id"
        ).fetchall()
    entries: dict[str, list[tuple[Any, ...]]] = {}
    outcomes: Counter[str] = Counter()
    for row in rows:
        entries.setdefault(row[1], []).append(row)
        outcomes[row[4]] += 1
        if row[4] in ("pending", "unverified"):
            verdict.open_entries += 1
    verdict.outcomes = dict(outcomes)
    for sid in ids:
        history = _get(f"{url}/_simulator/sources/{sid}/history")["history"]
        src = _get(f"{url}/_simulator/sources/{sid}")
        if str(parse_pair(f"{src['copystate']}/{src['migrationcycle']}")) == MAIN[-1]:
            verdict.at_target += 1
        seen: Counter[tuple[str, str]] = Counter()
        for h in history:
            if h["by"] != "client":
                continue
            verdict.client_moves += 1
            move = (h["from"], h["to"])
            seen[move] += 1
            if seen[move] > 1:
                verdict.duplicated_steps += 1
                verdict.examples.append(f"{sid}: {move} applied {seen[move]} times")
            if move[0] in RANK and move[1] in RANK and RANK[move[1]] < RANK[move[0]]:
                verdict.backward_moves += 1
                verdict.examples.append(f"{sid}: backward {move[0]} → {move[1]}")
            _account(verdict, sid, h, entries.get(sid, []))
    return verdict


def _account(verdict: Verdict, sid: str, h: dict[str, Any], entries: list[tuple[Any, ...]]) -> None:
    """Which journal entry pushed history entry ``h``, and does it tell the truth?"""
    at = h["time"] / 1000
    slack = 0.05  # the simulator's times are whole milliseconds
    candidates = [
        e
        for e in entries
        if e[3] == h["to"] and e[5] <= at + slack and (e[6] is None or e[6] >= at - slack)
    ]
    if not candidates:
        verdict.unjournalled_pushes += 1
        verdict.examples.append(f"{sid}: {h['from']} → {h['to']} pushed, no journal entry open")
        return
    matched = [e for e in candidates if e[2] == h["from"]]
    if not matched:
        verdict.overrides += 1
        verdict.examples.append(
            f"{sid}: {h['from']} → {h['to']} pushed by an intent from {candidates[-1][2]}"
        )
        return
    if all(e[4] in ("failed", "ignored", "conflict", "rejected") for e in matched):
        verdict.applied_recorded_failed += 1
        verdict.examples.append(
            f"{sid}: {h['from']} → {h['to']} landed, journalled {[e[4] for e in matched]}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--sources", type=int, default=60, help="sources per scenario")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated fault seeds")
    parser.add_argument("--small", action="store_true", help="the test suite's size")
    parser.add_argument("--json", type=Path, help="write the verdicts here")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    per = args.sources
    if args.small:
        per, seeds = 12, seeds[:1]
    verdicts = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="sms-flow-soak-") as tmp:
            print(f"seed {seed}: {4 * per} sources ...", flush=True)
            verdict = drive(seed, per, Path(tmp))
        verdicts.append(verdict)
        print(_line(verdict), flush=True)
    total = Verdict(-1, sum(v.sources for v in verdicts))
    for v in verdicts:
        for name in (
            "duplicated_steps", "backward_moves", "overrides", "applied_recorded_failed",
            "unjournalled_pushes", "open_entries", "at_target", "client_moves",
        ):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(v, name))
    print(f"all seeds: {_line(total)}")
    if args.json:
        data = {"verdicts": [asdict(v) for v in verdicts], "total": asdict(total)}
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for v in verdicts:
        for example in v.examples[:10]:
            print(f"  seed {v.seed}: {example}")
    return 0 if all(v.clean for v in verdicts) else 1


def _line(v: Verdict) -> str:
    return (
        f"{v.duplicated_steps} duplicated steps, {v.backward_moves} backward moves, "
        f"{v.overrides} overrides, {v.applied_recorded_failed} applied recorded as failed; "
        f"{v.unjournalled_pushes} pushes without a journal entry, {v.open_entries} entries "
        f"left open, {v.at_target}/{v.sources} at the target, {v.client_moves} client moves"
        + (f"; {v.seconds} s; exits {v.exits}; faults {v.faults}" if v.seed >= 0 else "")
    )


if __name__ == "__main__":
    sys.exit(main())
