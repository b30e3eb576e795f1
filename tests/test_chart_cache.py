"""The cache of checked charts behind ``default_chart``: the same chart, never a stale or
foreign one, and never a failed load because of the cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sms_flow.chart import Chart, cache_dir, default_chart_path, load_cached, load_chart
from sms_flow.errors import ChartError
from tests.test_chart import TINY


def tables(chart: Chart) -> tuple[object, ...]:
    return (
        chart.name,
        chart.version,
        chart.source,
        chart.digest,
        chart.initial,
        chart.pairs,
        [(str(e), e.by, e.basis, e.note, e.entry) for e in chart.edges],
        dict(chart.states),
        chart.triggers,
    )


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("chart-*.json"))


def tamper(entry: Path, name: str) -> None:
    stored = json.loads(entry.read_text())
    stored["chart"]["name"] = name
    entry.write_text(json.dumps(stored))


def test_the_cached_default_chart_is_the_chart_its_text_gives(tmp_path: Path) -> None:
    path = default_chart_path()
    first = load_cached(path, tmp_path)
    assert len(entries(tmp_path)) == 1
    second = load_cached(path, tmp_path)
    assert tables(first) == tables(second) == tables(load_chart(path))


def test_the_entry_is_used_while_text_and_schema_are_unchanged(
    tmp_path: Path, write_chart: Callable[[str], Path]
) -> None:
    path = write_chart(TINY)
    load_cached(path, tmp_path / "cache")
    [entry] = entries(tmp_path / "cache")
    tamper(entry, "from-the-cache")
    assert load_cached(path, tmp_path / "cache").name == "from-the-cache"
    path.write_text(TINY.replace("name: tiny", "name: edited"), encoding="utf-8")
    assert load_cached(path, tmp_path / "cache").name == "edited"


def test_an_edited_chart_is_checked_again_and_reported_as_load_chart_does(
    tmp_path: Path, write_chart: Callable[[str], Path]
) -> None:
    path = write_chart(TINY)
    load_cached(path, tmp_path / "cache")
    path.write_text(TINY.replace("to: INIT,", "to: INITT,"), encoding="utf-8")
    with pytest.raises(ChartError) as cached:
        load_cached(path, tmp_path / "cache")
    with pytest.raises(ChartError) as direct:
        load_chart(path)
    assert str(cached.value) == str(direct.value)
    assert "unknown copystate 'INITT'" in str(cached.value)
    assert len(entries(tmp_path / "cache")) == 1, "a chart that does not load is not cached"


def test_an_entry_that_others_may_write_is_not_used(
    tmp_path: Path, write_chart: Callable[[str], Path]
) -> None:
    path = write_chart(TINY)
    load_cached(path, tmp_path / "cache")
    [entry] = entries(tmp_path / "cache")
    assert entry.stat().st_mode & 0o077 == 0, "written for the user alone"
    tamper(entry, "planted")
    entry.chmod(0o666)
    assert load_cached(path, tmp_path / "cache").name == "tiny"


def test_an_unreadable_entry_is_replaced(
    tmp_path: Path, write_chart: Callable[[str], Path]
) -> None:
    path = write_chart(TINY)
    load_cached(path, tmp_path / "cache")
    [entry] = entries(tmp_path / "cache")
    for broken in ("{not json", '{"entry": "another", "chart": {}}', '{"chart": 7}'):
        entry.write_text(broken)
        assert load_cached(path, tmp_path / "cache").name == "tiny"
    entry.write_text(json.dumps({"entry": entry.name, "chart": {"name": "half"}}))
    assert load_cached(path, tmp_path / "cache").name == "tiny"
    assert json.loads(entry.read_text())["chart"]["name"] == "tiny"


def test_no_cache_or_one_that_cannot_be_written_still_loads(
    tmp_path: Path, write_chart: Callable[[str], Path]
) -> None:
    path = write_chart(TINY)
    assert load_cached(path, None).name == "tiny"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert load_cached(path, blocker / "cache").name == "tiny"
    with pytest.raises(ChartError, match="no such file"):
        load_cached(tmp_path / "nope.yaml", tmp_path / "cache")


def test_where_the_cache_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SMS_FLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sms-flow"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "sms-flow"
    monkeypatch.setenv("SMS_FLOW_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("SMS_FLOW_CACHE_DIR", "")
    assert cache_dir() is None
