"""YAML as sms-flow reads its files (``sms_flow/_yaml.py``): one rule for charts and wave files,
and every problem a :class:`YamlProblem` with its line, never a bare Python error."""

from __future__ import annotations

import pytest

from sms_flow._yaml import MAX_DEPTH, YamlProblem, load


def nested_flow(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_block(depth: int) -> str:
    """``depth`` mappings, each the value of the one around it."""
    keys = "".join(f"{'  ' * level}k{level}:\n" for level in range(depth - 1))
    return keys + "  " * (depth - 1) + "x: 1\n"


@pytest.mark.parametrize("text", [nested_flow(20_000), nested_block(3_000)])
def test_deep_nesting_is_a_problem_with_its_line_not_a_recursion_error(text: str) -> None:
    with pytest.raises(YamlProblem) as info:
        load(text)
    assert f"nested more than {MAX_DEPTH} levels deep" in info.value.problem
    assert info.value.where.startswith("line ")


@pytest.mark.parametrize("depth", [1, 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 999, 1_001])
def test_the_depth_rule_holds_on_both_sides_of_the_limit(depth: int) -> None:
    """Up to MAX_DEPTH loads, one more does not, in flow and block style alike (libyaml, used
    when PyYAML has it, nests up to 1,000 levels by itself; the pure-Python loader recurses)."""
    for text in (nested_flow(depth), nested_block(depth)):
        if depth <= MAX_DEPTH:
            assert load(text) is not None
        else:
            with pytest.raises(YamlProblem, match="nested more than"):
                load(text)


def test_a_key_given_twice_is_refused_with_both_lines() -> None:
    with pytest.raises(YamlProblem) as info:
        load("name: a\nsources: {count: 1}\nname: b\n")
    assert info.value.where == "line 3, column 1"
    assert info.value.problem == "key 'name' is given twice (first on line 1)"


@pytest.mark.parametrize(
    ("text", "where", "needle"),
    [
        ("when: 2020-13-45\n", "line 1, column 7", "month must be in 1..12"),
        ("n: !!int x\n", "line 1, column 4", "cannot read this int"),
        ("n: !!float x\n", "line 1, column 4", "cannot read this float"),
        ("? [a, b]\n: c\n", "line 1, column 3", "a list cannot be a mapping key"),
        ("? {a: 1}\n: c\n", "line 1, column 3", "a dict cannot be a mapping key"),
        ("a: [1, 2\n", "line 2, column 1", "expected ',' or ']'"),
        ("a: !!python/object:os.system x\n", "line 1, column 4", "could not determine"),
    ],
)
def test_values_that_cannot_be_made_are_problems_with_their_line(
    text: str, where: str, needle: str
) -> None:
    with pytest.raises(YamlProblem) as info:
        load(text)
    assert info.value.where == where
    assert needle in info.value.problem
    assert "\n" not in str(info.value)


def test_plain_data_loads() -> None:
    assert load("a: {b: [1, 2.5, x]}\nc: null\n") == {"a": {"b": [1, 2.5, "x"]}, "c": None}
