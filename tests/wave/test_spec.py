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
