"""Drawing a chart: a Mermaid state diagram (with a Markdown page around it) and Graphviz dot.

Nodes are copystates; each carries the migration cycles it may be paired with. Edges are
labelled with their trigger, the cycle they set when they change it, and who makes them
when it is not a changestate call; moves that cannot be undone (``irreversible``) are marked
⚠. A view (the chart file's ``views``) draws the edges of its triggers and the states they
join. Frozen states (the service ignores changestate in them)
are drawn dashed and marked ❄; final states lead to the end marker. Copystates are grouped
by the chart's ``group``: one colour each in Mermaid (whose state diagrams cannot draw an
edge between states inside two different composite states), one cluster each in dot.
"""

from __future__ import annotations

from collections.abc import Iterable

from sms_flow.chart import By, Chart, Edge, StateInfo, View
from sms_flow.errors import InputError
from sms_flow.states import CopyState

__all__ = ["select_view", "to_dot", "to_markdown", "to_mermaid"]

# Group colours (fill, stroke), in the order groups are first met in the chart.
_PALETTE = (
    ("#eef6ff", "#3b7dd8"),
    ("#effaf0", "#2e9b4a"),
    ("#fff7e6", "#d08a00"),
    ("#f3eefe", "#7a4fd1"),
    ("#fdeeee", "#c94242"),
    ("#eefafa", "#1f9a9a"),
    ("#f6f6f6", "#707070"),
    ("#fdf0f8", "#b8478f"),
    ("#f9fbe7", "#8a9a10"),
    ("#eceff1", "#455a64"),
)


def _node_id(cs: CopyState) -> str:
    return f"s_{cs.value}"


def select_view(chart: Chart, name: str | None) -> View | None:
    """The chart's view called ``name``; None for ``None`` or ``"all"`` (the whole chart).

    Raises :class:`~sms_flow.errors.InputError` naming the views there are.
    """
    if name is None or name == "all":
        return None
    view = chart.views.get(name)
    if view is None:
        there = ", ".join([*chart.views, "all"])
        raise InputError(f"the chart {chart.name!r} has no view {name!r}; its views: {there}")
    return view


class _Picture:
    """What one diagram draws: the edges (of a view, or all) and the copystates they join."""

    def __init__(self, chart: Chart, view: View | None) -> None:
        if view is None:
            self.edges = list(chart.edges)
            shown = set(chart.states)
        else:
            wanted = set(view.triggers)
            self.edges = [e for e in chart.edges if e.trigger in wanted]
            shown = {e.source.copystate for e in self.edges} | {
                e.dest.copystate for e in self.edges
            }
        self.states = [info for cs, info in chart.states.items() if cs in shown]
        self.groups: dict[str, list[StateInfo]] = {}
        for info in self.states:
            self.groups.setdefault(info.group, []).append(info)
        # Colours stay those of the whole chart, so a group looks the same in every view.
        order = list(dict.fromkeys(info.group for info in chart.states.values()))
        self.colour = {g: _PALETTE[order.index(g) % len(_PALETTE)] for g in self.groups}
        # The start marker where the picture shows a move out of the initial state.
        starts = view is None or any(e.source == chart.initial for e in self.edges)
        self.initial = chart.initial if starts else None
        # The end marker after a final state the picture shows a move into.
        entered = {e.dest.copystate for e in self.edges}
        self.finals = [
            i for i in self.states if i.final and (view is None or i.copystate in entered)
        ]


def _merged_edges(
    edges: Iterable[Edge],
) -> list[tuple[CopyState, CopyState, str, By, str, bool]]:
    """Edges between copystates: (from, to, trigger, by, cycle text, irreversible), in chart
    order."""
    merged: dict[tuple[CopyState, CopyState, str], tuple[By, list[Edge]]] = {}
    for edge in edges:
        key = (edge.source.copystate, edge.dest.copystate, edge.trigger)
        merged.setdefault(key, (edge.by, []))[1].append(edge)
    out = []
    for (src, dst, trigger), (by, edges) in merged.items():
        changed = [e for e in edges if e.dest.migrationcycle != e.source.migrationcycle]
        cycles = sorted({e.dest.migrationcycle.value for e in changed})
        cycle_text = f"→ {', '.join(cycles)}" if changed else ""
        out.append((src, dst, trigger, by, cycle_text, any(e.irreversible for e in edges)))
    return out


def _label(trigger: str, by: By, cycle_text: str) -> str:
    parts = [trigger]
    if cycle_text:
        parts.append(cycle_text)
    if by is not By.CLIENT:
        parts.append(f"[by {by.value}]")
    return " ".join(parts)


def to_mermaid(chart: Chart, view: View | None = None) -> str:
    """The chart (or one of its views, :func:`select_view`) as a Mermaid ``stateDiagram-v2``."""
    pic = _Picture(chart, view)
    lines = [
        "stateDiagram-v2",
        "    direction LR",
    ]
    for group in pic.groups:
        fill, stroke = pic.colour[group]
        lines.append(f"    classDef {group} fill:{fill},stroke:{stroke},color:#111")
    lines.append("    classDef frozen stroke-dasharray:6 4,stroke-width:2px")
    for group, infos in pic.groups.items():
        lines.append(f"    %% group: {group}")
        for info in infos:
            cs = info.copystate
            flag = " ❄ frozen" if info.frozen else ""
            cycles = " · ".join(c.value for c in info.cycles)
            lines.append(
                f'    state "{cs.value}{flag}<br/><small>{cycles}</small>" as {_node_id(cs)}'
            )
    initial = pic.initial
    if initial is not None:
        lines.append(
            f"    [*] --> {_node_id(initial.copystate)} : registered ({initial.migrationcycle.value})"
        )
    # One arrow per pair of copystates, its label listing every move between them: Mermaid
    # draws parallel arrows on top of each other, and keeps only one loop on a state.
    labels: dict[tuple[CopyState, CopyState], list[str]] = {}
    for src, dst, trigger, by, cycle_text, irreversible in _merged_edges(pic.edges):
        mark = " ⚠" if irreversible else ""
        labels.setdefault((src, dst), []).append(_label(trigger, by, cycle_text) + mark)
    for (src, dst), texts in labels.items():
        lines.append(f"    {_node_id(src)} --> {_node_id(dst)} : {' / '.join(texts)}")
    for info in pic.finals:
        lines.append(f"    {_node_id(info.copystate)} --> [*]")
    for group, infos in pic.groups.items():
        ids = ",".join(_node_id(i.copystate) for i in infos)
        lines.append(f"    class {ids} {group}")
    frozen = ",".join(_node_id(i.copystate) for i in pic.states if i.frozen)
    if frozen:
        lines.append(f"    class {frozen} frozen")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(chart: Chart, view: View | None = None) -> str:
    """The chart (or one of its views) as Graphviz dot, one cluster per group."""
    pic = _Picture(chart, view)
    lines = [
        f"digraph {_dot_quote(chart.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    if pic.initial is not None:
        lines.append('  start [shape=point, width=0.15, label=""];')
    if pic.finals:
        lines.append(
            '  end [shape=doublecircle, width=0.2, label="", style=filled, fillcolor=black];'
        )
    for group, infos in pic.groups.items():
        fill, stroke = pic.colour[group]
        lines.append(f"  subgraph {_dot_quote('cluster_' + group)} {{")
        lines.append(f"    label={_dot_quote(group)}; color={_dot_quote(stroke)};")
        for info in infos:
            cs = info.copystate
            cycles = ", ".join(c.value for c in info.cycles)
            flag = " (frozen)" if info.frozen else ""
            style = '"rounded,filled,dashed"' if info.frozen else '"rounded,filled"'
            label = f"{cs.value}{flag}\\n{cycles}"
            lines.append(
                f'    {_node_id(cs)} [label="{label}", fillcolor={_dot_quote(fill)}, '
                f"color={_dot_quote(stroke)}, style={style}];"
            )
        lines.append("  }")
    initial = pic.initial
    if initial is not None:
        lines.append(
            f"  start -> {_node_id(initial.copystate)} "
            f"[label={_dot_quote(initial.migrationcycle.value)}];"
        )
    for src, dst, trigger, by, cycle_text, irreversible in _merged_edges(pic.edges):
        style = "" if by is By.CLIENT else ", style=dashed"
        label = _dot_quote(_label(trigger, by, cycle_text) + (" ⚠" if irreversible else ""))
        lines.append(f"  {_node_id(src)} -> {_node_id(dst)} [label={label}{style}];")
    for info in pic.finals:
        lines.append(f"  {_node_id(info.copystate)} -> end;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for row in rows:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return out


def _from_text(chart: Chart, edges: list[Edge]) -> str:
    by_cs: dict[CopyState, list[str]] = {}
    for e in edges:
        by_cs.setdefault(e.source.copystate, []).append(e.source.migrationcycle.value)
    parts = []
    for cs, cycles in by_cs.items():
        info = chart.states[cs]
        parts.append(
            cs.value if len(cycles) == len(info.cycles) else f"{cs.value}/{','.join(cycles)}"
        )
    return ", ".join(parts)


def _views_markdown(chart: Chart) -> list[str]:
    """The overview first, then every other view, then the whole chart: a title, the view's
    note, how to draw it, and its Mermaid diagram."""
    lines: list[str] = []
    views = sorted(chart.views.values(), key=lambda v: v.name != "overview")
    for view in [*views, None]:
        if view is None:
            title, note, name = "The whole chart", "Every state and every move at once.", "all"
        else:
            title, note, name = view.title, view.note, view.name
        lines += [
            f"## {title}",
            "",
            *([note, ""] if note else []),
            f"`sms-flow diagram --view {name}`",
            "",
            "```mermaid",
            to_mermaid(chart, view).rstrip("\n"),
            "```",
            "",
        ]
    return lines


def to_markdown(chart: Chart) -> str:
    """A Markdown page: the overview, each view and the whole chart as Mermaid diagrams, then
    every state and every transition."""
    lines = [
        f"# Statechart `{chart.name}` (version {chart.version})",
        "",
        "<!-- Generated by `sms-flow diagram --format markdown` from the chart file; do not edit. -->",
        "",
        "A state is the pair (copystate, migrationcycle). Boxes are copystates with the cycles "
        "they may be paired with; colours are groups. **❄ frozen**: the service ignores "
        "changestate there (it answers 200 and changes nothing), so the moves out of it are "
        "made by the service. Edge labels: the trigger, `→ cycle` when the move sets another "
        "migration cycle, `[by service]` when the service makes the move by itself, "
        "`[by action]` when it makes it in answer to another API call (a task action, a "
        "delete; the table's `call` says which). **⚠** marks a move that cannot be undone "
        "(irreversible: `set --path` takes it only when asked for it).",
        "",
        *_views_markdown(chart),
        "## States",
        "",
    ]
    lines += _table(
        ("copystate", "cycles", "frozen", "final", "group", "note"),
        (
            (
                f"`{i.copystate.value}`",
                ", ".join(c.value for c in i.cycles),
                "❄ yes" if i.frozen else "",
                "yes" if i.final else "",
                i.group,
                i.note,
            )
            for i in chart.states.values()
        ),
    )
    lines += ["", "## Transitions", ""]
    by_entry: dict[int, list[Edge]] = {}
    for edge in chart.edges:
        by_entry.setdefault(edge.entry, []).append(edge)
    rows = []
    for edges in by_entry.values():
        first = edges[0]
        dests = sorted({str(e.dest) for e in edges})
        rows.append(
            (
                f"`{first.trigger}`",
                _from_text(chart, edges),
                ", ".join(dests),
                first.by.value,
                "⚠ yes" if first.irreversible else "",
                f"`{first.call}`" if first.call else "",
                first.basis.value,
                first.note,
            )
        )
    lines += _table(("trigger", "from", "to", "by", "irreversible", "call", "basis", "note"), rows)
    lines.append("")
    return "\n".join(lines)
