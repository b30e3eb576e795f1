"""What a person sees while a wave or drill runs, and the summary at the end (rich)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from sms_flow.wave.report import Event, EventKind, SourceOutcome, WaveReport

__all__ = ["WaveDisplay", "print_drill_summary", "print_wave_summary"]


class WaveDisplay:
    """A live progress display: the sources queued (not started yet), one bar per copystate
    (how many of the started sources are in it now: the queued ones are counted apart, so
    WAITING shows the sources really in WAITING), one for the sources done, and a line of
    counters: failed, applied, waiting for the service, retries and 429s, elapsed time and
    an ETA. On a terminal it redraws in place, and log lines (warnings) are printed above
    it; elsewhere it prints a status line every few seconds."""

    def __init__(
        self,
        console: Console,
        *,
        wave: str,
        target: str,
        counts: Callable[[], Counter[str]],
        total: Callable[[], int],
        order: Sequence[str] = (),
        interval: float = 5.0,
        label: str = "sources done",
        eta: bool = True,
    ) -> None:
        self.label = label
        self.eta = eta
        """Whether to show an ETA (not when the total grows as the run goes: a joined worker)."""
        self.console = console
        self._order = {name: i for i, name in enumerate(order)}
        self.wave = wave
        self.target = target
        self._counts = counts
        self._total = total
        self._interval = interval
        self._last_line = 0.0
        self.done = 0
        self.failed = 0
        self.applied = 0
        self.observed = 0
        self.waiting = 0
        self.started = time.monotonic()
        self.report: WaveReport | None = None
        self._queued: dict[str, str] = {}
        """Sources queued and not started yet, with the copystate they wait in."""
        self._queued_by_state: Counter[str] = Counter()
        self._live = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description:>14}"),
            BarColumn(bar_width=40),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            console=console,
            transient=False,
            refresh_per_second=8,
            redirect_stdout=True,
            redirect_stderr=True,
            disable=not self._live,
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None
        self._queued_task: Any = None

    def __enter__(self) -> WaveDisplay:
        self._progress.start()
        self._overall = self._progress.add_task(self.label, total=1, extra="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh(final=True)
        self._progress.stop()

    @property
    def queued(self) -> int:
        return len(self._queued)

    def _unqueue(self, source_id: str | None) -> None:
        state = self._queued.pop(source_id, None) if source_id is not None else None
        if state is not None:
            self._queued_by_state[state] -= 1

    def on_event(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.WAVE_STARTED and event.report is not None:
            self.report = event.report
        elif kind is EventKind.QUEUED and event.report is not None:
            self.report = event.report
            for record in event.report.sources.values():
                # A joined worker queues batch after batch: count each source once.
                if record.outcome is None and record.source_id not in self._queued:
                    state = (record.start or "?").partition("/")[0]
                    self._queued[record.source_id] = state
                    self._queued_by_state[state] += 1
        elif kind is EventKind.SOURCE_STARTED:
            self._unqueue(event.source_id)
        elif kind is EventKind.STEP and event.step is not None:
            if event.step.outcome.value == "applied":
                self.applied += 1
            else:
                self.observed += 1
                self.waiting = max(0, self.waiting - 1)
        elif kind is EventKind.WAITING:
            self.waiting += 1
        elif kind is EventKind.SOURCE_DONE:
            self._unqueue(event.source_id)
            self.done += 1
            if event.outcome is SourceOutcome.FAILED:
                self.failed += 1
        elif kind is EventKind.STOPPING:
            self.console.print(
                "[yellow]stopping: the steps in flight finish and are journalled; Ctrl-C again "
                "to abort[/]"
            )

    def counters(self, total: int) -> str:
        """The line of counters: failed, applied, waiting, retries, 429s, rate, elapsed, ETA."""
        elapsed = time.monotonic() - self.started
        rate = self.applied / elapsed if elapsed > 0 else 0.0
        retries = self.report.retries_so_far() if self.report is not None else {}
        parts = [
            f"failed {self.failed}",
            f"applied {self.applied}",
            f"waiting {self.waiting}",
            f"retries {retries.get('total', 0)} (429: {retries.get('429', 0)})",
            f"{rate:,.0f} transitions/s",
            f"elapsed {_clock(elapsed)}",
        ]
        left = total - self.done
        if self.eta and self.done and left > 0:
            parts.append(f"ETA {_clock(elapsed / self.done * left)}")
        return " · ".join(parts)

    def refresh(self, *, final: bool = False) -> None:
        counts = self._counts()
        counts.pop("?", None)  # sources whose state is not read yet
        counts.subtract(self._queued_by_state)
        counts = +counts  # the started sources only
        total = self._total()
        if total == 0:
            return
        extra = self.counters(total)
        if not self._live:
            now = time.monotonic()
            if final or now - self._last_line >= self._interval:
                self._last_line = now
                shown = ", ".join(f"{k} {v}" for k, v in self._sorted(counts))
                self.console.print(
                    f"{self.wave}: {self.done}/{total} sources done, {self.queued} queued; "
                    f"{extra}; now: {shown}"
                )
            return
        self._progress.update(self._overall, total=total, completed=self.done, extra=extra)
        if self._queued_task is None and self.report is not None:
            self._queued_task = self._progress.add_task("queued", total=total, extra="")
        if self._queued_task is not None:
            self._progress.update(self._queued_task, total=total, completed=self.queued)
        if any(state not in self._tasks for state in counts):
            # A state shows up for the first time: redraw the bars in lifecycle order.
            for task in self._tasks.values():
                self._progress.remove_task(task)
            seen = set(self._tasks) | set(counts)
            self._tasks = {
                state: self._progress.add_task(state, total=total, extra="")
                for state, _ in self._sorted(dict.fromkeys(seen, 0))
            }
        for state, task in self._tasks.items():
            self._progress.update(task, total=total, completed=counts.get(state, 0))

    def _sorted(self, counts: Mapping[str, int]) -> list[tuple[str, int]]:
        return sorted(
            counts.items(), key=lambda kv: (self._order.get(kv[0], len(self._order)), kv[0])
        )


def _clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a person."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _print_records(console: Console, title: str, records: Sequence[Any], style: str) -> None:
    """Sources with their state and why, 25 at most (the JSON report has all)."""
    if not records:
        return
    table = Table(title=f"{title} ({len(records)})", header_style=style)
    table.add_column("source")
    table.add_column("state")
    table.add_column("reason")
    for record in records[:25]:
        reason = record.error or ""
        if record.request_id and record.request_id not in reason:
            reason += f" (request_id {record.request_id})"
        table.add_row(record.source_id, record.state or "?", reason)
    if len(records) > 25:
        table.add_row("…", "", f"{len(records) - 25} more in the JSON report")
    console.print(table)


def print_wave_summary(
    console: Console, report: WaveReport, *, report_path: str | None = None
) -> None:
    """The table at the end of a wave: outcomes, transitions, failures with reasons."""
    table = Table(
        title=f"wave {report.wave} → {report.target}", show_header=True, header_style="bold"
    )
    table.add_column("outcome")
    table.add_column("sources", justify="right")
    labels = {
        SourceOutcome.FINISHED: "reached the target",
        SourceOutcome.ALREADY: "already at the target (skipped)",
        SourceOutcome.FAILED: "failed",
        SourceOutcome.STOPPED: "interrupted (run again to resume)",
    }
    rare = {
        SourceOutcome.UNVERIFIED: "last push unverified (may have landed)",
        SourceOutcome.OWNED: "held by another live driver (not driven)",
        SourceOutcome.TAKEN: "taken over by another driver",
    }
    for outcome, label in labels.items():
        table.add_row(label, str(report.count(outcome)))
    for outcome, label in rare.items():
        if report.count(outcome):
            table.add_row(label, str(report.count(outcome)))
    table.add_row("total", str(len(report.sources)), style="bold")
    console.print(table)
    rate = report.applied / report.elapsed if report.elapsed > 0 else 0.0
    console.print(
        f"transitions applied: {report.applied}, moves made by the service: {report.observed}, "
        f"elapsed {report.elapsed:.1f}s ({rate:,.0f} transitions/s)"
    )
    if report.retries.get("total"):
        causes = ", ".join(
            f"{cause}: {n}" for cause, n in report.retries.items() if n and cause != "total"
        )
        console.print(f"retries: {report.retries['total']} ({causes})")
    if report.session is not None:
        taken = (
            f", {report.taken_over:,} of them taken over from dead workers"
            if report.taken_over
            else ""
        )
        console.print(
            f"worker of session {report.session[:8]}: drove {len(report.sources):,} of the "
            f"wave's sources{taken}; the whole wave: sms-flow status {report.wave}"
        )
    for run in report.took_over:
        console.print(f"took over from a dead run: {run}")
    if report.recovery is not None and (report.recovery.total or report.recovery.left_open):
        r = report.recovery
        left = [
            f"{n} {what}"
            for n, what in (
                (r.unread, "unread"),
                (r.held, "held by a live driver"),
                (
                    r.unknown_endpoint,
                    "of unknown endpoint (sms-flow recover --wave "
                    f"{report.wave} --unknown-endpoint)",
                ),
            )
            if n
        ]
        console.print(
            f"recovered from an earlier run: {r.applied} applied, {r.pushed_again} pushed again, "
            f"{r.ignored} did not take, {r.conflicts} conflicts, {r.failed} failed"
            + (f"; left open: {', '.join(left)}" if left else "")
        )
    for title, records, style in (
        ("failed sources", report.failed, "bold red"),
        ("unverified sources", report.unverified, "bold yellow"),
        ("sources of another driver", report.not_ours, "bold yellow"),
    ):
        _print_records(console, title, records, style)
    if report.lease_lost:
        console.print(f"[red]stopped: {report.lease_lost}[/]")
    elif report.unreachable:
        console.print(f"[red]stopped: {report.unreachable}[/]")
    elif report.halted:
        across = " (counted across the wave's workers)" if report.session else ""
        console.print(
            f"[red]halted: the failure policy's limit of failed sources was reached{across}[/]"
        )
    elif report.interrupted and report.session:
        console.print(
            "[yellow]interrupted: this worker's unfinished sources went back to the wave's "
            "other workers (or the next run); run the same command again to join them[/]"
        )
    elif report.interrupted:
        console.print("[yellow]interrupted before the end; run the same command again to resume[/]")
    if report_path:
        console.print(f"report: {report_path}")


def print_drill_summary(
    console: Console, report: WaveReport, *, report_path: str | None = None
) -> None:
    """The table at the end of a drill: each source's verdict, the check's time and output."""
    table = Table(title=f"drill {report.wave}", header_style="bold")
    for col in ("source", "drill", "check (s)", "state", "note"):
        table.add_column(col, overflow="fold")
    verdicts: Counter[str] = Counter()
    for record in report.sources.values():
        verdict = str(
            record.detail.get("drill") or (record.outcome.value if record.outcome else "?")
        )
        verdicts[verdict] += 1
        style = {"passed": "green", "failed": "red", "timeout": "red", "error": "red"}.get(
            verdict, ""
        )
        note = record.error or str(record.detail.get("check_output") or "")
        seconds = record.detail.get("check_seconds")
        table.add_row(
            record.source_id,
            f"[{style}]{verdict}[/]" if style else verdict,
            f"{seconds:.2f}" if isinstance(seconds, float) else "",
            record.state or "?",
            note[:200],
        )
    console.print(table)
    console.print(
        ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        + f"; elapsed {report.elapsed:.1f}s"
    )
    if report.interrupted:
        console.print("[yellow]interrupted before the end; run the same command again to resume[/]")
    if report_path:
        console.print(f"report: {report_path}")
