"""Layers that only point down (issue 42): every module's imports, those inside functions
too, parsed with ``ast``; ``alm_offline.datasets`` is the root ``datasets/`` folder (the
import finder that maps it is invisible to static tools, so this test is the check)."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bottom to top; a module may import its own layer and the ones below it
LAYERS = ("base", "core", "runtime", "datasets", "training", "tools", "cli")


def layer_of_module(name: str) -> str | None:
    """The layer of a dotted module name of this project (None for anything else)."""
    parts = name.split(".")
    if parts[0] == "cli":
        return "cli"
    if parts[0] != "alm_offline":
        return None
    if len(parts) > 1 and parts[1] == "commands":  # cli.py's command modules
        return "cli"
    if len(parts) == 1 or parts[1] in ("config", "errors", "scores", "configs", "baseline_table"):
        return "base"
    return parts[1] if parts[1] in LAYERS else None


def layer_of_file(path: Path) -> str:
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "datasets":
        return "datasets"
    if relative.parts[0] == "cli.py":
        return "cli"
    module = ".".join(relative.with_suffix("").parts)
    return layer_of_module(module) or "base"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only inside datasets/ and the packages
                base = "alm_offline.datasets" if layer_of_file(path) == "datasets" else ""
                found.append((node.lineno, f"{base}.{node.module or ''}".rstrip(".")))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def started_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``python -m MODULE`` the file starts as a subprocess: a
    list or tuple with ``"-m"`` followed by a string, or by a name assigned a string in the
    same file (``module = "..."``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = {
        target.id: node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.List | ast.Tuple):
            continue
        items = node.elts
        for flag, module in itertools.pairwise(items):
            if not (isinstance(flag, ast.Constant) and flag.value == "-m"):
                continue
            if isinstance(module, ast.Constant) and isinstance(module.value, str):
                found.append((module.lineno, module.value))
            elif isinstance(module, ast.Name) and module.id in named:
                found.append((module.lineno, named[module.id]))
    return found


def project_files() -> list[Path]:
    files = [*ROOT.glob("alm_offline/**/*.py"), *ROOT.glob("datasets/**/*.py"), ROOT / "cli.py"]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def test_every_import_points_down_or_sideways():
    upward = []
    for path in project_files():
        own = LAYERS.index(layer_of_file(path))
        for line, module in imported_modules(path):
            target = layer_of_module(module)
            if target is not None and LAYERS.index(target) > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({target})")
    assert upward == []


def test_every_subprocess_the_library_starts_points_down_or_sideways():
    """A module that starts ``python -m X`` depends on X as if it imported it: the tools
    start the library's own entries (``alm_offline.training``, ``alm_offline.tools.sweep``),
    never the ``cli`` above them."""
    upward, starts = [], []
    for path in project_files():
        own = LAYERS.index(layer_of_file(path))
        for line, module in started_modules(path):
            target = layer_of_module(module)
            starts.append(module)
            if target is not None and LAYERS.index(target) > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} starts {module} ({target})")
    assert upward == []
    assert {"alm_offline.training", "alm_offline.tools.sweep", "alm_offline.training.sac_suite"
            } <= set(starts)  # fmt: skip
    assert started_modules(ROOT / "alm_offline/tools/sweep/trials.py") != []


def test_the_layer_map_knows_every_package():
    packages = {p.name for p in (ROOT / "alm_offline").iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS) | {"configs", "commands"}, packages
    assert layer_of_module("alm_offline.commands.train") == "cli"
    assert layer_of_file(ROOT / "datasets" / "suite.py") == "datasets"
    assert layer_of_module("alm_offline.datasets.suite") == "datasets"
    assert layer_of_module("alm_offline.tools.make_suite") == "tools"
    assert layer_of_file(ROOT / "alm_offline" / "config.py") == "base"
