"""YAML as sms-flow reads its files: safe tags only, no key given twice, nested at most 64 deep.

Statecharts (:mod:`sms_flow._chartfile`) and wave and drill files (:mod:`sms_flow.wave.spec`)
are read by :func:`load`, so one rule holds for all of them:

* PyYAML's safe loader: plain data, no Python objects;
* a key given twice in one mapping is refused (naming the line of the first), where PyYAML
  would keep the last silently;
* collections nested more than :data:`MAX_DEPTH` levels deep are refused before they are
  built (PyYAML's composer recurses once per level, so deep nesting would otherwise end in
  a ``RecursionError``); the files sms-flow reads are a few levels deep;
* a value its tag cannot make (``2020-13-45`` as a date, ``!!int x``) or a key that cannot
  be a mapping key (a list) is refused with its line, never raised as a bare ``ValueError``.

Every problem is a :class:`YamlProblem` with the line and column where known; each caller
turns it into its own error. Parsing uses libyaml when PyYAML was built with it (about 8
times faster); a problem is then reported by the pure-Python parser, whose messages (and
line and column) sms-flow has always given.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

__all__ = ["MAX_DEPTH", "YamlProblem", "load"]

MAX_DEPTH: Final = 64
"""The deepest nesting of collections (mappings and lists) accepted in a file."""

# What the safe constructor raises, instead of a YAML error, for a value it cannot make.
_CONSTRUCTION_ERRORS = (ValueError, TypeError, AttributeError, OverflowError)


class YamlProblem(Exception):
    """A YAML text sms-flow does not read: ``where`` (``"line 3, column 5"`` or ``""``) and
    ``problem``, one line each."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            first = seen.get(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a {type(key).__name__} cannot be a mapping key; use a plain value",
                key_node.start_mark,
            ) from None
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice (first on line {first + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return dict(loader.construct_mapping(node))


class _Guarded:
    """What both loaders add to PyYAML's safe one: values that cannot be made are YAML errors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except yaml.YAMLError:
            raise
        except _CONSTRUCTION_ERRORS as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read this {node.tag.rsplit(':', 1)[-1]}: {exc}",
                node.start_mark,
            ) from None


class _UniqueKeyLoader(_Guarded, yaml.SafeLoader):
    """The pure-Python safe loader: unique keys, and a composer that stops at MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH and self.check_event(yaml.CollectionStartEvent):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"collections are nested more than {MAX_DEPTH} levels deep here; "
                    "a statechart, wave or drill file is a few levels deep",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# libyaml's loader, when PyYAML was built with it; its composer is not recursive.
_FastLoader: Any = type(
    "_FastLoader", (_Guarded, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {}
)

for _loader in (_UniqueKeyLoader, _FastLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_depth(text: str) -> None:
    """Raise a YAML error when collections nest deeper than MAX_DEPTH (events only, no tree)."""
    depth = 0
    for event in yaml.parse(text, Loader=_FastLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.YAMLError("nested too deep")  # worded, and marked, by the Python loader
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load(text: str) -> Any:
    """The data of one YAML document, by the rules above; raises :class:`YamlProblem`."""
    try:
        try:
            _check_depth(text)
            return yaml.load(text, Loader=_FastLoader)
        except yaml.YAMLError:
            # The pure-Python loader words the problem (and marks its line and column) as
            # sms-flow always has, and stops at MAX_DEPTH itself.
            return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlProblem(where, _one_line(exc.problem or str(exc))) from None
    except yaml.YAMLError as exc:
        raise YamlProblem("", _one_line(str(exc))) from None
    except _CONSTRUCTION_ERRORS as exc:  # in a mapping or list built after its first value
        raise YamlProblem("", f"a value cannot be read: {_one_line(str(exc))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())
