"""The wave file: its schema and the loader's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wave.conftest import write_wave


async def test_wave_file_errors_name_the_field(tmp_path: Path) -> None:
    from sms_flow.errors import ConfigError
    from sms_flow.wave.spec import load_wave

    path = write_wave(
        tmp_path / "w.yaml", name="x", sources={"count": 3}, endpoint="https://sms.example.com"
    )
    with pytest.raises(ConfigError, match="only the simulator allows"):
        load_wave(path)
    path = write_wave(tmp_path / "w.yaml", name="x", sources={"ids": ["a/b"]})
    with pytest.raises(ConfigError, match="not safe in a URL path"):
        load_wave(path)
    path = write_wave(
        tmp_path / "w.yaml",
        name="x",
        sources={"count": 3},
        target="FINISHED/checking",
        concurency=3,
    )
    with pytest.raises(ConfigError, match="concurency"):
        load_wave(path)


def test_a_key_given_twice_is_refused_in_wave_and_drill_files(tmp_path: Path) -> None:
    """One YAML rule for charts, waves and drills: no silent last-wins."""
    from sms_flow.errors import ConfigError
    from sms_flow.wave import load_drill, load_wave

    wave = tmp_path / "w.yaml"
    wave.write_text("name: a\nsources: {count: 3}\nconcurrency: 4\nconcurrency: 64\n")
    with pytest.raises(
        ConfigError,
        match=r"at line 4, column 1: key 'concurrency' is given twice \(first on line 3",
    ):
        load_wave(wave)
    drill = tmp_path / "d.yaml"
    drill.write_text("name: d\nsources: {ids: [a]}\ncheck: 'true'\ncheck: 'false'\n")
    with pytest.raises(ConfigError, match="key 'check' is given twice"):
        load_drill(drill)


def test_nested_20000_deep_is_a_config_error(tmp_path: Path) -> None:
    from sms_flow.errors import ConfigError
    from sms_flow.wave.spec import load_wave

    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 20_000 + "]" * 20_000 + "\n")
    with pytest.raises(ConfigError, match="nested more than 64 levels deep"):
        load_wave(path)


def test_a_wave_file_is_read_within_bounds(tmp_path: Path) -> None:
    from sms_flow.errors import ConfigError
    from sms_flow.wave.spec import load_wave

    with pytest.raises(ConfigError, match=r"wave file /dev/zero is not a regular file"):
        load_wave("/dev/zero")
    big = write_wave(tmp_path / "big.yaml", name="big", sources={"count": 1})
    with big.open("a") as file:
        file.write("#" * (1 << 20))
    with pytest.raises(ConfigError, match="is larger than 1,048,576 bytes"):
        load_wave(big)


def test_ids_and_count_have_caps(tmp_path: Path) -> None:
    from sms_flow.errors import ConfigError
    from sms_flow.wave.spec import COUNT_MAX, IDS_MAX, load_wave

    ids = [f"src-{i:05d}" for i in range(IDS_MAX + 1)]
    path = write_wave(tmp_path / "w.yaml", name="many", sources={"ids": ids})
    with pytest.raises(
        ConfigError,
        match=r"sources.ids: 10,001 ids: a wave drives at most 10,000 sources .*several waves",
    ):
        load_wave(path)
    path = write_wave(tmp_path / "w.yaml", name="many", sources={"ids": ids[:IDS_MAX]})
    assert len(load_wave(path).sources.ids or ()) == IDS_MAX
    path = write_wave(tmp_path / "w.yaml", name="many", sources={"count": COUNT_MAX + 1})
    with pytest.raises(ConfigError, match=r"sources.count: count 10,001: a wave drives at most"):
        load_wave(path)
    path = write_wave(tmp_path / "w.yaml", name="many", sources={"count": COUNT_MAX})
    assert load_wave(path).sources.count == COUNT_MAX


@pytest.mark.parametrize("rate", [1e-300, 0.0099, 0, -1, float("inf"), float("nan")])
def test_an_absurd_rate_limit_is_refused(tmp_path: Path, rate: float) -> None:
    from sms_flow.errors import ConfigError
    from sms_flow.wave.spec import load_wave

    path = write_wave(tmp_path / "w.yaml", name="r", sources={"count": 1}, rate_limit=rate)
    with pytest.raises(ConfigError, match="rate_limit"):
        load_wave(path)
    with pytest.raises(ConfigError, match="rate_limit"):
        load_wave(write_wave(tmp_path / "ok.yaml", name="r", sources={"count": 1}), rate_limit=rate)


def test_the_slowest_rate_limit_is_accepted(tmp_path: Path) -> None:
    from sms_flow.wave.spec import load_wave

    path = write_wave(tmp_path / "w.yaml", name="r", sources={"count": 1}, rate_limit=0.01)
    assert load_wave(path).rate_limit == 0.01


def test_a_mistyped_key_is_answered_with_the_closest_one(tmp_path: Path) -> None:
    from sms_flow.errors import ConfigError
    from sms_flow.wave import load_wave

    path = write_wave(
        tmp_path / "w.yaml",
        name="w",
        concurency=3,
        sources={"cont": 3},
        simulator={"latncy": 0.1},
        zzz=1,
    )
    with pytest.raises(ConfigError) as refused:
        load_wave(path)
    message = str(refused.value)
    assert "concurency: Extra inputs are not permitted (did you mean 'concurrency'?)" in message
    assert "sources.cont: Extra inputs are not permitted (did you mean 'count'?)" in message
    assert "simulator.latncy: Extra inputs are not permitted (did you mean 'latency'?)" in message
    assert "zzz: Extra inputs are not permitted;" in message + ";", "nothing close: no guess"
