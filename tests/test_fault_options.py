"""The simulator's faults are defined once, by ``Faults``: the simulator's command-line options
are generated from its fields, and a wave file's ``simulator:`` options are its fields."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from sms_flow.errors import ConfigError
from sms_flow.simulator.cli import add_arguments, add_model_arguments, config_from_args, run
from sms_flow.simulator.faults import Faults, Seconds, Share
from sms_flow.wave import load_wave


def simulator_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simulator")
    add_arguments(parser)
    return parser


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_every_fault_is_an_option_with_its_description_and_default() -> None:
    text = " ".join(simulator_parser().format_help().split())
    for name, field in Faults.model_fields.items():
        assert option(name) in text, name
        assert field.description is not None
        assert field.description[1:].rstrip(".") in text, name
    assert "--retry-after S seconds sent in Retry-After with a 429 (0 to 86400; default: 1)" in text
    assert "--error-rate F share of /v3 requests answered 500 or 503 (0 to 1; default: 0)" in text
    assert "--error-mode {alternate,random}" in text


def test_options_given_become_faults_and_the_rest_keep_the_defaults() -> None:
    args = simulator_parser().parse_args(
        ["--error-rate", "0.25", "--error-mode", "random", "--latency-jitter", "0.5"]
    )
    config = config_from_args(args)
    assert config.faults == Faults(error_rate=0.25, error_mode="random", latency_jitter=0.5)
    assert config_from_args(simulator_parser().parse_args([])).faults == Faults()


def test_a_new_field_of_the_model_becomes_an_option() -> None:
    class MoreFaults(Faults):
        reset_rate: Share = Field(0.0, description="Share of /v3 requests reset mid-answer.")
        stall: Seconds = Field(2.5, description="Seconds a stalled answer hangs.")

    parser = argparse.ArgumentParser()
    add_model_arguments(parser, MoreFaults)
    text = " ".join(parser.format_help().split())
    assert "--reset-rate F share of /v3 requests reset mid-answer (0 to 1; default: 0)" in text
    assert "--stall S seconds a stalled answer hangs (default: 2.5)" in text
    args = parser.parse_args(["--reset-rate", "0.5"])
    assert (args.reset_rate, args.stall, args.latency) == (0.5, None, None)


def test_a_field_with_no_command_line_form_is_refused_by_name() -> None:
    class Odd(Faults):
        hosts: list[str] = Field(default_factory=list, description="Hosts.")

    with pytest.raises(TypeError, match=r"Odd\.hosts .* no command-line form"):
        add_model_arguments(argparse.ArgumentParser(), Odd)


def test_the_command_line_keeps_the_rules_of_faults(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in (
        (["--error-rate", "0.6", "--drop-rate", "0.6"], "together they may not exceed 1"),
        (["--latency", "-1"], "latency: Input should be greater than or equal to 0"),
    ):
        assert run(simulator_parser().parse_args(argv)) == 2
        assert needle in capsys.readouterr().err


def write_wave(tmp_path: Path, simulator: dict[str, object]) -> Path:
    path = tmp_path / "wave.yaml"
    raw = {"name": "w", "sources": {"count": 2}, "simulator": simulator}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_a_wave_files_simulator_faults_are_the_fields_of_faults(tmp_path: Path) -> None:
    spec = load_wave(write_wave(tmp_path, {"error_rate": 0.1, "error_mode": "random", "seed": 4}))
    assert Faults(**spec.simulator.fault_settings()) == Faults(error_rate=0.1, error_mode="random")
    assert spec.simulator.seed == 4
    plain = load_wave(write_wave(tmp_path, {}))
    assert Faults(**plain.simulator.fault_settings()) == Faults(), "the same defaults"
    assert plain.simulator.retry_after == Faults().retry_after == 1.0


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"error_rate": 0.7, "throttle_rate": 0.5}, "together they may not exceed 1"),
        ({"drop_rate": 1.5}, "simulator.drop_rate: Input should be less than or equal to 1"),
        ({"latency": 7200}, "simulator.latency: Input should be less than or equal to 3600"),
        ({"error_mode": "sometimes"}, "simulator.error_mode"),
        ({"stall": 1}, "simulator.stall: Extra inputs are not permitted"),
    ],
)
def test_a_wave_files_simulator_faults_follow_the_rules_of_faults(
    tmp_path: Path, options: dict[str, object], needle: str
) -> None:
    path = write_wave(tmp_path, options)
    with pytest.raises(ConfigError) as info:
        load_wave(path)
    assert str(path) in str(info.value) and needle in str(info.value)
