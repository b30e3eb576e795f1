"""The ``sms-flow`` argument parser: every command, its options and help, and no heavy import.

Building it imports argparse and nothing of the commands: each command names its handler
(``"module:function"``), which :func:`sms_flow.cli.main` imports when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from sms_flow import __version__
from sms_flow.cli import EXIT_BAD_INPUT

__all__ = ["build_parser", "command_of"]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one clear line (its own default) but never prints usage twice."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _add_journal_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--journal",
        metavar="PATH",
        help="journal file, or a PostgreSQL database as postgresql://USER@HOST:PORT/DB "
        "(default: $SMS_FLOW_JOURNAL, else journal.sqlite in $SMS_FLOW_HOME, "
        "else ./.sms-flow/journal.sqlite; a wave or drill file's journal: comes before both)",
    )


def _seconds(text: str) -> float:
    """Seconds (a lease, a wait): a number above 0 and under a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds above 0 and under a day")
    return value


def _add_lease_option(p: argparse.ArgumentParser) -> None:
    from sms_flow.journal import DEFAULT_LEASE

    p.add_argument(
        "--lease",
        type=_seconds,
        default=DEFAULT_LEASE,
        metavar="S",
        help="seconds this run owns its sources without a heartbeat; renewed every third, "
        "taken over by the next run once expired (default %(default)g)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options that `run` and `drill` share: output, logging, metrics, and where the service
    is."""
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve Prometheus metrics of the run at http://127.0.0.1:N/metrics while it runs "
        "(0: any free port, printed on stderr)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="read the sources and print each one's plan (steps pushed, waited for, made by "
        "another API call, irreversible ⚠); nothing is sent, journalled or claimed",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument(
        "--log-level",
        default=None,
        choices=("debug", "info", "warning", "error"),
        help="log level (stderr)",
    )
    g = p.add_argument_group("service")
    g.add_argument(
        "--endpoint",
        metavar="URL",
        help="the service (or a simulator) instead of the file's endpoint",
    )
    g.add_argument("--region", metavar="R", help="a region instead of an endpoint")


def _add_endpoint_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("service")
    g.add_argument(
        "--endpoint",
        metavar="URL",
        help="SMS endpoint, e.g. https://sms.cn-north-4.myhuaweicloud.com or a simulator's URL "
        "(default: $SMS_FLOW_ENDPOINT)",
    )
    g.add_argument(
        "--region",
        metavar="R",
        help="region instead of an endpoint, e.g. cn-north-4 (default: $SMS_FLOW_REGION)",
    )
    g.add_argument(
        "--attempts",
        type=int,
        default=None,
        metavar="N",
        help="most attempts per request, retries included (default: as many as --total-time "
        "allows)",
    )
    g.add_argument(
        "--total-time",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a request may take, retries and their backoff included (default 60); "
        "an outage shorter than this costs time, not the request",
    )
    g.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per attempt (default 10)"
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates (only for a test endpoint)",
    )


_CREDENTIALS_HELP = """credentials come from the environment: SMS_FLOW_TOKEN (an IAM token), or
CLOUD_SDK_AK, CLOUD_SDK_SK and CLOUD_SDK_PROJECT_ID (AK/SK signing, as the SDK samples)."""


# -- the parser ---------------------------------------------------------------------------

_EPILOG = (
    """exit codes: 0 done/allowed, 1 rejected by the chart (or a source failed),
2 bad input, 3 API or network error, 4 not applied (frozen, read-back disagrees, or
moved by someone else: not pushed), 5 owned by another live driver (a wave's second
run, set on a driven source, sources held or taken over, a lost lease),
130 stopped by Ctrl-C (a wave or drill: run it again to resume)

"""
    + _CREDENTIALS_HELP
)


_CHART_HELP = "statechart YAML file to use instead of the default one"


def _add_command(
    sub: Any,
    command: str | None,
    name: str,
    options: Callable[[argparse.ArgumentParser], None],
    *,
    handler: str,
    logs: bool,
    **kwargs: Any,
) -> None:
    """Add command ``name``, with its options when ``command`` is ``name`` or ``None``."""
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(handler=handler, logs=logs)
    if command is None or command == name:
        options(p)


def _check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("current", metavar="FROM", help="current state, e.g. SYNCING/syncing")
    p.add_argument("requested", metavar="TO", help="requested state, e.g. CUTOVERING/cutovering")
    p.add_argument("--chart", metavar="FILE", help=_CHART_HELP)
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")


def _plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("current", metavar="FROM", help="current state, e.g. WAITING/checking")
    p.add_argument("requested", metavar="TO", help="target state, e.g. FINISHED/cutovered")
    p.add_argument("--chart", metavar="FILE", help=_CHART_HELP)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _diagram_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=("mermaid", "markdown", "dot"),
        default="mermaid",
        help="mermaid (default): the diagram; markdown: a page with every view and tables; "
        "dot: Graphviz",
    )
    p.add_argument(
        "--view",
        metavar="NAME",
        help="draw one view of the chart: overview (the main path), check, failure, stop, "
        "drill, clearing, deletion (the default chart's), or all (the default: everything at "
        "once); with mermaid or dot",
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE instead of standard output"
    )
    p.add_argument("--chart", metavar="FILE", help=_CHART_HELP)


def _get_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source_id", metavar="SOURCE_ID", help="the source server's id in SMS")
    p.add_argument(
        "--json", action="store_true", help="print the source as the service returned it"
    )
    p.add_argument("--chart", metavar="FILE", help=_CHART_HELP)
    _add_endpoint_options(p)


def _set_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source_id", metavar="SOURCE_ID", help="the source server's id in SMS")
    p.add_argument("--copystate", metavar="X", help="the copystate to set, e.g. REPLICATE")
    p.add_argument(
        "--migrationcycle", metavar="Y", help="the migration cycle to set, e.g. replicating"
    )
    p.add_argument(
        "--path",
        action="store_true",
        help="when the change is not one permitted move, take the shortest legal path step by "
        "step: the plan is printed first, and more than one step needs --yes or a yes at the "
        "terminal",
    )
    p.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="with --path: take a path of more than one step without asking",
    )
    p.add_argument(
        "--allow",
        action="append",
        metavar="TRIGGER",
        help="with --path: consent to an irreversible step (⚠ in the plan) that the path takes "
        "on the way to what you asked for, e.g. --allow cutover (repeat for more)",
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        metavar="SECONDS",
        help="with --path: seconds to wait for each move the service makes (default 300)",
    )
    p.add_argument(
        "--wait-for-action",
        action="store_true",
        help="with --path: wait (up to --wait) for a move only another API call makes, while "
        "someone makes that call; without it such a step stops the path at once, saying what "
        "to call",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="take the source from a live driver that owns it (a wave) and push even from a "
        "frozen state; needs --reason, journalled",
    )
    p.add_argument(
        "--reason", metavar="TEXT", help="why; journalled with the change (required with --force)"
    )
    p.add_argument(
        "--actor", default="cli", metavar="NAME", help="who asks, for the journal (default: cli)"
    )
    p.add_argument(
        "--no-verify", action="store_true", help="do not read the source back after the push"
    )
    _add_journal_option(p)
    p.add_argument("--no-journal", action="store_true", help="do not write the change to a journal")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document: the steps applied and where the source is, or the error",
    )
    p.add_argument("--chart", metavar="FILE", help=_CHART_HELP)
    _add_lease_option(p)
    _add_endpoint_options(p)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("wave", metavar="WAVE.yaml", help="the wave file")
    _add_journal_option(p)
    p.add_argument(
        "--report",
        metavar="PATH",
        help="JSON report (default: reports/WAVE.json beside the journal file, or in "
        "$SMS_FLOW_HOME for a PostgreSQL journal)",
    )
    p.add_argument(
        "--concurrency", type=int, metavar="N", help="sources driven at once (overrides the file)"
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        metavar="R",
        help="requests per second towards the service, 0.01 or more (overrides the file)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="embedded simulator only: start this wave's simulated sources and its membership "
        "over (its own state file; other waves' and drills' are left alone; the journal keeps "
        "its history)",
    )
    _add_membership_option(p)
    _add_lease_option(p)
    p.add_argument(
        "--join",
        action="store_true",
        help="run as one worker of the wave: start it when no worker runs it, or join the "
        "live ones (on any machine sharing the journal; the PostgreSQL journal for several "
        "machines); each claims the next batch of sources its workers have not done, and "
        "takes over a dead worker's once its lease ends. Without --join a second run is "
        "refused while the wave is driven",
    )
    _add_run_options(p)


def _add_membership_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reset-members",
        action="store_true",
        help="start the membership over: forget the sources the journal lists for this name (on "
        "any endpoint) and find them again; needed to run it on another endpoint than before",
    )


def _drill_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "drill", nargs="?", metavar="DRILL.yaml", help="the drill file (examples/drill.yaml)"
    )
    p.add_argument("--ids", metavar="ID,ID", help="sources to drill, without a drill file")
    p.add_argument(
        "--name",
        help="the drill's name in the journal, without a drill file (default: drill-DIGEST, "
        "from the check and the sources: the same drill resumes, another one is drilled anew)",
    )
    p.add_argument(
        "--check", metavar="COMMAND", help="the check's shell command (overrides the file's)"
    )
    p.add_argument(
        "--check-timeout",
        type=float,
        metavar="S",
        help="seconds before a check counts as failed (default 60)",
    )
    _add_journal_option(p)
    p.add_argument(
        "--report",
        metavar="PATH",
        help="JSON report (default: reports/NAME.json beside the journal file, or in "
        "$SMS_FLOW_HOME for a PostgreSQL journal)",
    )
    p.add_argument("--concurrency", type=int, metavar="N", help="sources drilled at once")
    p.add_argument(
        "--rate-limit",
        type=float,
        metavar="R",
        help="requests per second towards the service, 0.01 or more",
    )
    _add_membership_option(p)
    _add_lease_option(p)
    _add_run_options(p)


def _history_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source_id", nargs="?", metavar="SOURCE_ID", help="a source server's id")
    p.add_argument("--wave", metavar="NAME", help="every entry of this wave (or drill)")
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="entries written at or after WHEN: ISO-8601 (UTC unless an offset is given, "
        "e.g. 2026-12-02T04:30) or a duration ago (30m, 2h, 7d)",
    )
    p.add_argument("--until", metavar="WHEN", help="entries written before WHEN")
    p.add_argument(
        "--outcome",
        action="append",
        metavar="O[,O]",
        help="only these outcomes: pending, applied, rejected, failed, ignored, conflict, "
        "observed, unverified (repeat or separate with commas)",
    )
    p.add_argument("--actor", metavar="NAME", help="only entries of this actor (cli, wave:NAME)")
    _add_journal_option(p)
    p.add_argument("--limit", type=int, metavar="N", help="only the last N entries (N >= 0)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), csv (a header, then one row an entry) or json (an array)",
    )
    p.add_argument("--json", action="store_true", help="the same as --format json")


def _status_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("wave", metavar="WAVE", help="the wave's (or drill's) name")
    _add_journal_option(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")


def _list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state", metavar="S", help="only sources in this copystate (e.g. syncing, SYNCING)"
    )
    p.add_argument(
        "--cycle", metavar="C", help="only sources in this migration cycle (e.g. cutovered)"
    )
    p.add_argument("--name", metavar="PREFIX", help="only sources whose name starts with PREFIX")
    p.add_argument("--limit", type=int, metavar="N", help="at most N sources")
    p.add_argument("--json", action="store_true", help="print the sources as a JSON array")
    _add_endpoint_options(p)


def _completion_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")


def _journal_options(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="journal_command", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True
    check = sub.add_parser(
        "check",
        help="check the journal in full and show what it holds",
        description=(
            "Run SQLite's full integrity_check on a journal file (or check a PostgreSQL "
            "journal's schema) and show its schema version, "
            "entries, open intents, live runs and the sources they hold. Exit 0 when it is "
            "sound, 3 when it is damaged or cannot be read."
        ),
    )
    check.set_defaults(handler="sms_flow.cli.journal:check")
    _add_journal_option(check)
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    migrate = sub.add_parser(
        "migrate",
        help="bring the journal's schema up to this sms-flow's",
        description=(
            "Apply the journal's pending schema migrations (SQLite file or PostgreSQL "
            "database) and say from which version to which. A journal written by a newer "
            "sms-flow is refused, untouched (exit 2): upgrade sms-flow to use it."
        ),
    )
    migrate.set_defaults(handler="sms_flow.cli.journal:migrate")
    _add_journal_option(migrate)
    migrate.add_argument("--json", action="store_true", help="print what was done as JSON")
    copy = sub.add_parser(
        "copy",
        help="copy a journal into a new one: SQLite to PostgreSQL, or back",
        description=(
            "Copy everything journal SRC holds into DST, a new file or an empty database, "
            "SQLite and PostgreSQL in either direction (or to another file, database or "
            "host): every entry with its id and all its columns, the runs (ended or not), "
            "the claims and the fencing counter (tokens keep increasing after the copy), the "
            "waves and their members in order. Both are migrated to this sms-flow's schema "
            "first; a journal of a newer sms-flow is refused (exit 2). Refused before "
            "anything is written: a DST that holds anything (exit 2: give a new one), a SRC "
            "with a live run, a wave in progress (exit 5: wait for it to end, or stop it). "
            "Rows are streamed in batches, in one transaction on DST: a copy that fails "
            "leaves DST as it was. Prints rows copied per table on a terminal, then the rows "
            "in SRC and in DST per table; exit 3 if they differ."
        ),
    )
    copy.set_defaults(handler="sms_flow.cli.journal:copy")
    copy.add_argument(
        "source",
        metavar="SRC",
        help="the journal to copy: a journal file, or postgresql://USER@HOST:PORT/DB",
    )
    copy.add_argument(
        "destination",
        metavar="DST",
        help="where to copy it: a file that does not exist yet (or an empty journal), or "
        "an empty PostgreSQL database as postgresql://USER@HOST:PORT/DB",
    )
    copy.add_argument("--json", action="store_true", help="print the counts as JSON")


def _recover_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wave", metavar="NAME", help="only the open intents of this wave or drill")
    p.add_argument(
        "--source",
        action="append",
        metavar="ID",
        help="only the open intents of this source (repeat for more)",
    )
    _add_journal_option(p)
    p.add_argument(
        "--unknown-endpoint",
        action="store_true",
        help="also settle intents written before sms-flow recorded endpoints, against this one",
    )
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    _add_lease_option(p)
    _add_endpoint_options(p)


def _simulator_options(p: argparse.ArgumentParser) -> None:
    # The simulator's own options, its faults generated from its fault definitions (pydantic).
    from sms_flow.simulator.cli import add_arguments

    add_arguments(p)


def command_of(argv: Sequence[str]) -> str:
    """The command ``argv`` names ("" for none): its first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argparse tree: every command with its help, and the options of ``command``.

    A command's options are added when ``command`` is its name, or for every command when
    ``command`` is ``None``; :func:`sms_flow.cli.main` passes the command its arguments name,
    so a run builds its own options only (the simulator's come from its fault definitions
    and import pydantic). Each command's namespace carries ``handler``
    (``"module:function"``, imported by :func:`sms_flow.cli.main` when the command runs) and
    ``logs`` (whether the command configures logging).
    """
    parser = _Parser(
        prog="sms-flow",
        description=(
            "Validate, plan, push and orchestrate Huawei Cloud SMS source-server state changes "
            "(PUT /v3/sources/{id}/changestate) through a statechart."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sms-flow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    _add_command(
        sub,
        command,
        "check",
        _check_options,
        handler="sms_flow.cli.model:check",
        logs=False,
        help="may a source go from FROM to TO? (exit 0 allowed, 1 rejected)",
        description=(
            "Check one requested change against the statechart. FROM is COPYSTATE/CYCLE; TO is "
            "COPYSTATE/CYCLE, COPYSTATE or /CYCLE (a part left out is not requested). Values "
            "are case-insensitive. Allowed: exit 0 and the trigger. Rejected: exit 1, every "
            "reason, and the shortest legal path when one exists. Bad input: exit 2."
        ),
        epilog="example: sms-flow check SYNCING/syncing CUTOVERING",
    )

    _add_command(
        sub,
        command,
        "plan",
        _plan_options,
        handler="sms_flow.cli.model:plan",
        logs=False,
        help="the shortest legal sequence of moves from FROM to TO",
        description=(
            "Plan the shortest legal sequence of moves from FROM to TO. Steps the service makes "
            "itself are marked; a driver waits for them instead of pushing. Exit 1 when no "
            "sequence exists."
        ),
        epilog="example: sms-flow plan WAITING/checking FINISHED/cutovered",
    )

    _add_command(
        sub,
        command,
        "diagram",
        _diagram_options,
        handler="sms_flow.cli.model:diagram",
        logs=False,
        help="draw the statechart (Mermaid, Markdown page, or Graphviz dot)",
        description=(
            "Render the statechart as a Mermaid state diagram, a Markdown page around it, or "
            "Graphviz dot: the whole chart, or one of its views (--view), small pictures of the "
            "main path and of each cross-cutting move, named in the chart file's views."
        ),
    )

    _add_command(
        sub,
        command,
        "get",
        _get_options,
        handler="sms_flow.cli.service:get",
        logs=True,
        help="read a source server's state from the service",
        description="Read a source server (GET /v3/sources/{id}) and show its state and the moves the chart permits.",
        epilog=_CREDENTIALS_HELP,
    )

    _add_command(
        sub,
        command,
        "set",
        _set_options,
        handler="sms_flow.cli.service:set_state",
        logs=True,
        help="check, push, verify and journal a state change",
        description=(
            "Read the source's current state, check the requested change against the chart, push it "
            "(PUT /v3/sources/{id}/changestate), read it back, and say what happened. A source a live "
            "driver (a wave) owns is refused unless --force --reason TEXT, which takes it over (the "
            "wave then leaves it alone).\n\n"
            "With --path, a change that is not one permitted move takes the chart's shortest "
            "legal path: the plan is printed first (each step: trigger, from → to, who makes it, "
            "⚠ when it cannot be undone); more than one step needs --yes or a yes at the "
            "terminal (off a terminal without --yes: refused, exit 2); a path through an "
            "irreversible step you did not ask for (its destination is not what you asked) is "
            "refused unless --allow TRIGGER names it. Each step is printed as it is applied. A "
            "move only another API call makes stops the path at once, saying what to call "
            "(--wait-for-action waits for it). Ctrl-C stops after the step in flight; a failure "
            "stops at once: both print the steps applied and where the source is now.\n\n"
            "Exit 0 applied, 1 rejected by the chart (or an irreversible step not allowed, or "
            "not confirmed), 2 bad input (or confirmation needed off a terminal), 3 API or "
            "network error, 4 not applied (frozen, the read-back disagrees, a move another API "
            "makes, a wait that timed out), 5 owned by another live driver, 130 interrupted."
        ),
        epilog=_CREDENTIALS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    _add_command(
        sub,
        command,
        "run",
        _run_options,
        handler="sms_flow.cli.waves:run",
        logs=True,
        help="drive a wave of sources to a target state (examples/wave.yaml)",
        description=(
            "Drive every source of a wave file along its shortest legal path to the target, with "
            "bounded concurrency, a rate limit and a failure policy; every step journalled. Runs "
            "against the embedded simulator unless the file or --endpoint/--region name a service. "
            "Ctrl-C or SIGTERM stops cleanly (steps in flight finish and are journalled; requests "
            "waiting for the rate limit are not sent); a second one aborts (a partial report is "
            "written); run the same command again to resume, also after a crash. A second run of "
            "a wave whose run is live is refused. The journal and report paths are checked before "
            "anything is sent. Exit 0 when every source is at the target, 1 when any failed, 2 for "
            "bad input, 5 when the wave is owned by a live run, some sources are held or were "
            "taken over by another driver, or the run lost its lease, 130 when stopped early."
        ),
        epilog=_CREDENTIALS_HELP,
    )

    _add_command(
        sub,
        command,
        "drill",
        _drill_options,
        handler="sms_flow.cli.waves:drill",
        logs=True,
        help="run a migration drill on syncing sources (premig*, with a check)",
        description=(
            "Run a migration drill on sources in SYNCING: premigready → premiging → the check → "
            "premiged or premigfailed → back to SYNCING, with a report per source. The check is a "
            "shell command run with SMS_FLOW_SOURCE_ID and SMS_FLOW_DRILL in its environment; exit "
            "status 0 passes; one still running at its timeout is killed and fails. Give a drill file "
            "(a wave file with a check), or --ids and --check. Exit 0 when every drill passed, 1 when "
            "any failed or a source failed, 5 when the drill is owned by a live run or sources are "
            "held by another driver, 130 when stopped early; run it again to resume."
        ),
        epilog=_CREDENTIALS_HELP,
    )

    _add_command(
        sub,
        command,
        "history",
        _history_options,
        handler="sms_flow.cli.journal:history",
        logs=True,
        help="what the journal says happened to a source or a wave",
        description=(
            "Show the journal's entries, oldest first: of one source, of every source of a "
            "wave, or of the whole journal, filtered by time, outcome and actor. Entries are "
            "read and printed a page at a time, so the first come at once whatever the "
            "journal's size."
        ),
        epilog=(
            "examples: sms-flow history --wave wave-1 --outcome failed,conflict\n"
            "          sms-flow history --since 2h --actor cli --format csv > changes.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    _add_command(
        sub,
        command,
        "status",
        _status_options,
        handler="sms_flow.cli.status:status",
        logs=True,
        help="where a wave's sources are, what failed, who drives it (from the journal)",
        description=(
            "Show a wave's (or drill's) sources by state, the sources whose latest step "
            "failed, its open intents and its live driver, all from the journal: no request "
            "to the service. Works from another terminal while the wave runs. Exit 0, or 2 "
            "when the journal knows no such wave."
        ),
    )

    _add_command(
        sub,
        command,
        "list",
        _list_options,
        handler="sms_flow.cli.sources:list_sources",
        logs=True,
        help="list the service's source servers and their states",
        description=(
            "List the source servers of the service (GET /v3/sources, page by page), "
            "filtered by copystate, migration cycle and name prefix, each with its state."
        ),
        epilog="example: sms-flow list --state syncing --name web-\n\n" + _CREDENTIALS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    _add_command(
        sub,
        command,
        "recover",
        _recover_options,
        handler="sms_flow.cli.journal:recover",
        logs=True,
        help="settle intents left open by any driver (a crashed set, a dead wave or drill)",
        description=(
            "Settle the journal's open intents (pending, or unverified) pushed to this endpoint, "
            "whoever left them: read each source back; the change shows: applied; the origin "
            "shows: pushed again (a pending one) or ignored (an unverified one); a third state: "
            "a conflict, left as it is. Sources a live driver holds are skipped and named. Exit "
            "0 when every intent asked for is settled, 3 when some could not be read (run it "
            "again), 5 when some are held by a live driver."
        ),
        epilog=_CREDENTIALS_HELP,
    )

    _add_command(
        sub,
        command,
        "journal",
        _journal_options,
        handler="sms_flow.cli.journal:check",
        logs=True,
        help="look after the journal (journal check, migrate, copy)",
        description=(
            "Commands on the journal itself: check runs the full integrity check, migrate "
            "brings its schema up to date, copy moves it into a new journal (SQLite or "
            "PostgreSQL)."
        ),
    )

    _add_command(
        sub,
        command,
        "completion",
        _completion_options,
        handler="sms_flow.cli.completion:completion",
        logs=False,
        help="print a shell completion script (bash or zsh)",
        description=(
            "Print a completion script for bash or zsh: commands, options, option values and "
            "the chart's states complete with Tab."
        ),
        epilog=(
            "bash: add to ~/.bashrc:  source <(sms-flow completion bash)\n"
            "zsh:  add to ~/.zshrc:   source <(sms-flow completion zsh)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    _add_command(
        sub,
        command,
        "simulator",
        _simulator_options,
        handler="sms_flow.simulator.cli:run",
        logs=True,
        help="run an SMS-compatible simulator (first line of output: its base URL)",
        description=(
            "Serve an SMS-compatible API on loopback for tests and demos: changestate, the read side, "
            "registration, AK/SK or token auth, frozen states, the service's own moves, faults on demand. "
            "Its first line of output is its base URL; it serves until interrupted."
        ),
    )

    _add_command(
        sub,
        command,
        "serve",
        _serve_options,
        handler="sms_flow.serve.cli:serve",
        logs=True,
        help="a validating gateway in front of SMS, with a JSON API, a live dashboard and "
        "/metrics (first line of output: its URL)",
        description=(
            "Serve SMS's changestate API, validated: a legal change goes through the engine "
            "(claimed, journalled with the caller, pushed, read back), an illegal one is refused "
            "in SMS's error shape (SMSFLOW.0001 ...) before SMS sees it; GET /v3/sources passes "
            "through. Callers send an IAM token (passed on) or sign with an AK/SK of "
            "--keys-file; the gateway signs its own requests with its own credentials. "
            "Also served: a live dashboard at /, a JSON API at /api/v1 (its OpenAPI document "
            "at /api/v1/openapi.json) and Prometheus metrics at /metrics. It serves until "
            "interrupted."
        ),
        epilog=_CREDENTIALS_HELP,
    )

    return parser


def _serve_options(p: argparse.ArgumentParser) -> None:
    _add_journal_option(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); any other needs API tokens",
    )
    p.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default 8080; 0: any)"
    )
    p.add_argument(
        "--keys-file",
        metavar="FILE",
        help="AK/SK keys of the gateway's callers, AK:SK:PROJECT a line "
        "(default: $SMS_FLOW_SERVE_KEYS, comma-separated)",
    )
    p.add_argument(
        "--tokens-file",
        metavar="FILE",
        help="API tokens for the dashboard, /api/v1 and /metrics, ROLE:TOKEN a line, roles "
        "viewer (reads) and operator (also changes); needed to listen beyond loopback "
        "(default: $SMS_FLOW_SERVE_TOKENS, comma-separated)",
    )
    p.add_argument("--chart", metavar="FILE", help=_CHART_HELP)
    _add_lease_option(p)
    p.add_argument(
        "--log-level",
        default=None,
        choices=("debug", "info", "warning", "error"),
        help="log level (stderr)",
    )
    p.add_argument(
        "--watch-only",
        action="store_true",
        help="no SMS endpoint: serve the dashboard, /metrics and the API's reads of the "
        "journal (a wave running elsewhere, make demo's included); the gateway and changes "
        "answer 502 SMSFLOW.0010",
    )
    _add_endpoint_options(p)
