"""The architecture the README draws: layers that import only downwards, and one public surface.

Each module of the package has a layer; a module may import only modules of lower layers (the
modules of one package share its layer and import each other freely). ``sms_flow/__init__.py``
re-exports the public API and is left out. Every import counts, including those inside
functions (a lazy import is still a dependency); imports under ``TYPE_CHECKING`` are for
annotations only and are left out (``errors`` names the planner's ``Verdict`` type that way).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sms_flow
from tests.conftest import REPO

PACKAGE = REPO / "sms_flow"

# Lowest first. The README's module map lists the same layers.
LAYERS: list[set[str]] = [
    {"errors", "log", "_textfile", "_yaml", "_guard", "_locks"},
    {"states", "_chartfile"},
    {"chart", "wire", "_signing", "retry"},
    {"planner", "diagram", "auth", "_answers"},
    {"machine", "client", "journal", "_sqlite"},
    {"journal_sqlite", "journal_postgres", "engine", "simulator"},
    {"journals"},
    {"wave", "testing", "metrics"},
    {"cli", "serve"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def unit_of(path: Path) -> str:
    """The layer unit of a file: its module, or its top package inside sms_flow."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "sms_flow":
                names = [f"sms_flow.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sms_flow" and len(parts) > 1:
                found.add(parts[1])
    return found


def package_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "__init__.py"]


def test_every_module_has_a_layer() -> None:
    units = {unit_of(p) for p in package_files()} - {"__main__"}
    assert units - set(RANK) == set(), "give each new module a layer in LAYERS (and the README)"


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_import_no_higher_ones(path: Path) -> None:
    unit = unit_of(path)
    if unit == "__main__":
        return
    upward = sorted(
        other
        for other in imported_units(path) - {unit}
        if other in RANK and RANK[other] >= RANK[unit]
    )
    assert upward == [], (
        f"{unit} (layer {RANK[unit]}) imports {upward} of its own or a higher layer"
    )


def test_the_simulator_shares_only_the_model_and_the_wire() -> None:
    """The simulator shares wire models, enums, chart and signing rules, nothing of the client,
    engine or journal (it is what those are tested against)."""
    forbidden = {"client", "engine", "journal", "journal_sqlite", "wave", "retry", "auth"}
    for path in (PACKAGE / "simulator").rglob("*.py"):
        assert imported_units(path) & forbidden == set(), path.name


def test_every_public_name_is_in_its_home_modules_all() -> None:
    """``sms_flow.__all__`` names what the modules export: each name resolves, and the module it
    comes from lists it in its own ``__all__``."""
    lazy: dict[str, str] = vars(sms_flow)["_LAZY"]
    for name in sms_flow.__all__:
        if name == "__version__":
            continue
        value = getattr(sms_flow, name)
        home = lazy.get(name) or getattr(value, "__module__", None)
        assert home is not None, name
        module = importlib.import_module(home)
        if home.count(".") > 1:  # defined in a submodule of a package (sms_flow.wave.spec)
            package = importlib.import_module(home.rsplit(".", 1)[0])
            if name in getattr(package, "__all__", ()):
                module = package
        assert name in getattr(module, "__all__", ()), f"{name} is not in {module.__name__}.__all__"
