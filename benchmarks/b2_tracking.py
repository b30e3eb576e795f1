"""B2: tracking 100,000 source servers in the engine: memory per source and time to load them.

What is measured: ``Engine.track_many`` loading ``sources`` (source id, state) items into a
fresh :class:`~sms_flow.engine.Engine`, states drawn from the default chart's pairs.

* **memory per source**: bytes that ``tracemalloc`` sees allocated by the load and still held
  afterwards (after a ``gc.collect()``), divided by the number of sources. The inputs (the id
  strings and the list of items) exist before the window on both sides, as they would in the
  caller, so neither side is charged for them;
* **load time**: wall time of the load alone (tracemalloc off), best of ``repeat`` fresh
  engines.

Baseline: the same sources each made a model of one ``transitions`` machine built from the
chart (the configuration :class:`~sms_flow.machine.LifecycleMachine` uses: no auto
transitions), ``machine.add_model(model, initial=state)``, with the model (a plain object
holding the id) created in the window, as a user of ``transitions`` must. ``add_model`` is
slow, so the baseline loads ``baseline_sources`` (10,000 by default) and its figures are
scaled linearly to ``sources``.

Target: at most 1 KB per source and under 1 s to load 100,000 (a smaller ``sources`` is
scaled linearly to 100,000 for the verdict).
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from transitions import Machine

from benchmarks._common import Baseline, Figure, ratio
from sms_flow.chart import Chart, default_chart
from sms_flow.engine import Engine
from sms_flow.states import StatePair

TARGET_SOURCES = 100_000
TARGET_BYTES = 1024
TARGET_SECONDS = 1.0


class _Unused:
    """The engine needs a client object; B2 never sends anything."""

    async def change_state(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("B2 sends nothing")

    async def get_source(self, source_id: str) -> Any:
        raise AssertionError("B2 sends nothing")


class _Source:
    """The model a ``transitions`` user would give each source server."""

    def __init__(self, source_id: str) -> None:
        self.id = source_id


def items(chart: Chart, n: int, seed: int = 20261128) -> list[tuple[str, StatePair]]:
    """``n`` (UUID source id, state) items, states drawn from the chart's pairs."""
    rng = random.Random(seed)
    pairs = list(chart.pairs)
    return [(str(uuid.UUID(int=rng.getrandbits(128))), rng.choice(pairs)) for _ in range(n)]


def _held_bytes(load: Callable[[], object]) -> tuple[int, object]:
    """Bytes allocated by ``load()`` and still held by what it returns."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = load()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


def _best_time(load: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        kept = load()
        best = min(best, time.perf_counter() - start)
        del kept
    return best


def _machine(chart: Chart) -> Machine:
    machine = Machine(
        model=None,
        states=[str(p) for p in chart.pairs],
        initial=None,
        auto_transitions=False,
        send_event=True,
    )
    for edge in chart.edges:
        machine.add_transition(edge.trigger, str(edge.source), str(edge.dest))
    return machine


def run(
    *,
    sources: int = TARGET_SOURCES,
    baseline_sources: int = 10_000,
    repeat: int = 3,
    **_unused: Any,
) -> list[Figure]:
    chart = default_chart()
    ours_items = items(chart, sources)
    base_n = min(baseline_sources, sources)
    names = {p: str(p) for p in chart.pairs}
    base_items = [(sid, names[p]) for sid, p in ours_items[:base_n]]

    def load_ours() -> Engine:
        engine = Engine(_Unused(), chart=chart, journal=None, verify=False)
        engine.track_many(ours_items)
        return engine

    def load_baseline() -> Machine:
        machine = _machine(chart)
        add = machine.add_model
        for sid, state in base_items:
            add(_Source(sid), initial=state)
        return machine

    Engine(_Unused(), chart=chart)  # warm up: chart tables, logging configuration
    engine_alone, _ = _held_bytes(lambda: Engine(_Unused(), chart=chart))
    machine_alone, _ = _held_bytes(lambda: _machine(chart))

    ours_bytes, kept = _held_bytes(load_ours)
    assert isinstance(kept, Engine) and len(kept.states) == len(set(s for s, _ in ours_items))
    del kept
    base_bytes, kept = _held_bytes(load_baseline)
    del kept
    ours_per = (ours_bytes - engine_alone) / sources
    base_per = (base_bytes - machine_alone) / base_n

    ours_time = _best_time(load_ours, repeat)
    base_time = _best_time(load_baseline, 1) * sources / base_n
    scale = TARGET_SOURCES / sources
    ours_time_100k = ours_time * scale

    scaled = "" if sources == TARGET_SOURCES else f"; scaled x{scale:g} to 100,000 for the target"
    return [
        Figure(
            id="B2",
            what=f"memory per tracked source ({sources:,})",
            value=ours_per,
            unit="bytes/source",
            better="lower",
            target=f"<= {TARGET_BYTES:,} bytes/source",
            met=ours_per <= TARGET_BYTES,
            baselines=[
                Baseline("transitions add_model", base_per, ratio(ours_per, base_per)),
            ],
            note=f"tracemalloc, ids excluded on both sides; baseline on {base_n:,} models",
            details={"sources": sources, "baseline_sources": base_n, "bytes": ours_bytes},
        ),
        Figure(
            id="B2",
            what=f"time to load {sources:,} sources",
            value=ours_time,
            unit="s",
            better="lower",
            target=f"< {TARGET_SECONDS:g} s for 100,000",
            met=ours_time_100k < TARGET_SECONDS,
            baselines=[
                Baseline("transitions add_model", base_time, ratio(ours_time, base_time)),
            ],
            note=f"best of {repeat}; baseline timed on {base_n:,} and scaled x{sources / base_n:g}"
            " (linearly: a lower bound, add_model slows as models accumulate)" + scaled,
            details={
                "sources": sources,
                "seconds_per_100k": ours_time_100k,
                "baseline_seconds_measured": base_time * base_n / sources,
            },
        ),
    ]
