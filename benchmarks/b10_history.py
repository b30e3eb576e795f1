"""B10: ``sms-flow history --wave NAME`` of a 100,000-entry wave: wall time and peak memory.

The journal: one wave of 20,000 sources, 5 applied entries each (the main path
configure → start → replicate → cutover → finish), 100,000 entries, written straight into a
journal file that :class:`~sms_flow.journal_sqlite.SqliteJournal` created (so the schema is
the real one), in id order, as a wave writes them.

What is measured, for each of ``--format table``, ``--format csv`` and ``--json``: the
console script ``sms-flow history --wave bench --journal FILE`` run as an operator runs it,
its output piped to a reader that counts the bytes (so every line is really written), timed
from start to exit with ``time.perf_counter``; its peak resident memory (``ru_maxrss`` of the
child, from :func:`os.wait4`); and how long the first byte of output took. Best of
``repeat`` runs (time and memory from the same run).

Baseline, same run: the same rows read with :mod:`sqlite3` and written as CSV by a few lines
of plain Python (``SELECT * FROM entries WHERE wave = ? ORDER BY id`` into ``csv.writer``),
what a user would write instead; its peak memory too.

Targets: the table in under 5 s and under 100 MB peak (issue 10; before, 95 s and 870 MB as
a table, 3 s and 480 MB with ``--json``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Baseline, Figure, ratio

TARGET_SECONDS = 5.0
TARGET_MB = 100.0
WAVE = "bench"
_PLAIN = "sqlite3 + csv in plain Python"
_PATH = [
    ("configure", "WAITING/checking", "WAITING/setting"),
    ("start", "WAITING/setting", "INIT/replicating"),
    ("replicate", "INIT/replicating", "REPLICATE/replicating"),
    ("cutover", "REPLICATE/replicating", "CUTOVERING/cutovering"),
    ("finish", "CUTOVERING/cutovering", "FINISHED/cutovered"),
]
_BASELINE = """
import csv, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
out = csv.writer(sys.stdout)
for row in conn.execute("SELECT * FROM entries WHERE wave = ? ORDER BY id", (sys.argv[2],)):
    out.writerow(row)
"""


def fill_journal(path: Path, entries: int, *, wave: str = WAVE, per_source: int = 5) -> None:
    """Write ``entries`` applied entries of ``wave`` (``per_source`` a source) into a new
    journal at ``path``: the real schema, rows written straight with :mod:`sqlite3`."""
    from sms_flow.journal_sqlite import SqliteJournal

    async def create() -> None:
        async with SqliteJournal(path) as journal:
            await journal.add_members(wave, [])

    asyncio.run(create())
    sources = max(1, entries // per_source)
    now = time.time() - entries * 0.001
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR IGNORE INTO waves (name) VALUES (?)", (wave,))
        conn.executemany(
            "INSERT INTO wave_members (wave, endpoint, source_id) VALUES (?, ?, ?)",
            ((wave, _ENDPOINT, _source(i)) for i in range(sources)),
        )
        conn.executemany(
            "INSERT INTO entries (source_id, trigger, from_state, to_state, actor, reason, "
            "forced, wave, outcome, request_id, attempts, error, created_at, settled_at, "
            "endpoint, project, run_id, fence) "
            "VALUES (?, ?, ?, ?, ?, NULL, 0, ?, 'applied', ?, 1, NULL, ?, ?, ?, NULL, ?, 1)",
            (
                (
                    _source(n % sources),
                    _PATH[(n // sources) % len(_PATH)][0],
                    _PATH[(n // sources) % len(_PATH)][1],
                    _PATH[(n // sources) % len(_PATH)][2],
                    f"wave:{wave}",
                    wave,
                    f"{n:032x}",
                    now + n * 0.001,
                    now + n * 0.001 + 0.0005,
                    _ENDPOINT,
                    "5f2c0f7e-0000-4000-8000-000000000001",
                )
                for n in range(entries)
            ),
        )


_ENDPOINT = "https://sms.cn-north-4.myhuaweicloud.com"


def _source(i: int) -> str:
    return f"5d8c0f3d-8a67-486d-a0aa-{i:012x}"


def _command() -> list[str]:
    script = Path(sys.executable).parent / "sms-flow"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sms_flow"]


def measure(argv: list[str]) -> dict[str, float]:
    """Run ``argv``, reading its output as it comes; wall seconds, seconds to the first
    byte, peak RSS in MB and bytes written. Raises when it exits other than 0."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    first = 0.0
    size = 0
    while chunk := child.stdout.read1(1 << 16):
        if not size:
            first = time.perf_counter() - started
        size += len(chunk)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = child.stderr.read().decode() if child.stderr else ""
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise AssertionError(f"B10: {' '.join(argv)} exited {child.returncode}: {stderr}")
    return {
        "seconds": elapsed,
        "first_byte_seconds": first,
        "peak_mb": usage.ru_maxrss / 1024,
        "bytes": size,
    }


def _best(argv: list[str], repeat: int) -> dict[str, float]:
    return min((measure(argv) for _ in range(repeat)), key=lambda m: m["seconds"])


def run(*, entries: int = 100_000, repeat: int = 1) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="sms-flow-b10-") as tmp:
        journal = Path(tmp) / "journal.sqlite"
        fill_journal(journal, entries)
        base = [*_command(), "history", "--wave", WAVE, "--journal", str(journal)]
        measured = {
            "table": _best(base, repeat),
            "csv": _best([*base, "--format", "csv"], repeat),
            "json": _best([*base, "--json"], repeat),
        }
        plain = _best([sys.executable, "-c", _BASELINE, str(journal), WAVE], repeat)
    scale = 100_000 / entries
    note = (
        f"{entries:,} entries; the time after the first byte is scaled to 100,000 entries "
        f"(x{scale:g}) to judge it"
        if entries != 100_000
        else ""
    )
    figures: list[Figure] = []
    for form, m in measured.items():
        details: dict[str, Any] = {k: round(v, 3) for k, v in m.items()}
        details["entries"] = entries
        # The start (Python, the first page) is paid once; the rest grows with the entries.
        scaled = m["first_byte_seconds"] + (m["seconds"] - m["first_byte_seconds"]) * scale
        details["seconds_at_100000"] = round(scaled, 3)
        seconds_met = scaled < TARGET_SECONDS
        figures.append(
            Figure(
                "B10",
                f"history --wave, {form}: wall time",
                m["seconds"],
                "s",
                "lower",
                f"< {TARGET_SECONDS:g} s (100,000 entries)",
                seconds_met if form == "table" else None,
                [
                    Baseline(
                        "sqlite3 + csv in plain Python",
                        plain["seconds"],
                        ratio(m["seconds"], plain["seconds"]),
                    )
                ],
                note,
                details,
            )
        )
        figures.append(
            Figure(
                "B10",
                f"history --wave, {form}: peak memory",
                m["peak_mb"],
                "MB",
                "lower",
                f"< {TARGET_MB:g} MB",
                m["peak_mb"] < TARGET_MB if form == "table" else None,
                [
                    Baseline(
                        "sqlite3 + csv in plain Python",
                        plain["peak_mb"],
                        ratio(m["peak_mb"], plain["peak_mb"]),
                    )
                ],
                note,
                {"first_byte_seconds": round(m["first_byte_seconds"], 3)},
            )
        )
    return figures


if __name__ == "__main__":
    from benchmarks.__main__ import table

    print(table(run(entries=int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)))
