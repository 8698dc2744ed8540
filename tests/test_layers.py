"""The package layering of docs/DESIGN.md, checked from the source: every `import realesr...` of every module
(at the top or inside a function: a lazy import is still a dependency) is parsed with `ast` and must be allowed by
the table below, so that the layers cannot silently rot. Change the table and DESIGN.md together."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "realesr"

# The leaf modules: they import nothing of realesr but each other (in this order: errors < atomic < cache).
LEAVES = {"errors", "atomic", "cache", "devices", "imagefiles", "schema", "statefiles", "signals"}

# unit -> the units it may import ("__init__" is the package root: its __version__ and lazy re-exports).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "atomic": {"errors"},
    "cache": {"errors", "atomic"},
    "devices": {"errors"},
    "schema": set(),
    "signals": set(),
    "statefiles": {"errors", "schema"},
    "imagefiles": {"errors", "atomic", "__init__"},
    "archs": LEAVES,
    "weights": LEAVES | {"archs", "__init__"},
    "degrade": LEAVES,
    "metrics": LEAVES,
    "data": LEAVES | {"degrade"},
    "infer": LEAVES | {"archs", "weights"},
    "train": LEAVES | {"archs", "weights", "degrade", "metrics", "data", "infer"},
    "evaluate": LEAVES | {"archs", "weights", "degrade", "metrics", "data", "infer"},
    "serve": LEAVES | {"archs", "weights", "infer"},
    "cli": LEAVES
    | {"archs", "weights", "degrade", "metrics", "data", "infer", "train", "evaluate", "serve", "__init__"},
    "__init__": {"errors", "infer"},
    "__main__": {"cli"},
}


def _units() -> set[str]:
    return {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())
    }


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported realesr module, line) for every import in ``path``, relative ones resolved."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts) if path.name == "__init__.py" else list(rel.parts[:-1])
    if path.name == "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "realesr":  # `from realesr import archs` imports the sub-module archs
                units = _units()
                found += [(f"realesr.{a.name}" if a.name in units else "realesr", node.lineno) for a in node.names]
            else:
                found.append((base, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "realesr"]


def _edges() -> dict[str, dict[str, list[str]]]:
    edges: dict[str, dict[str, list[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        unit = _unit(".".join(rel.parts).removesuffix(".__init__"))
        for name, line in _imports(path):
            target = _unit(name)
            if target != unit:
                edges.setdefault(unit, {}).setdefault(target, []).append(f"{path.relative_to(SRC)}:{line}")
    return edges


def test_every_unit_is_in_the_table() -> None:
    assert _units() == set(ALLOWED), "a new top-level module or package: give it a row in ALLOWED and DESIGN.md"


def test_imports_follow_the_layers() -> None:
    wrong = [
        f"{unit} -> {target} ({', '.join(where)})"
        for unit, targets in _edges().items()
        for target, where in targets.items()
        if target not in ALLOWED.get(unit, set())
    ]
    assert not wrong, "imports against docs/DESIGN.md's layers:\n" + "\n".join(wrong)


def test_nothing_imports_the_cli() -> None:
    users = sorted(unit for unit, targets in _edges().items() if "cli" in targets)
    assert users == ["__main__"]


def test_the_parser_sees_lazy_and_package_imports() -> None:
    # The checker itself: vgg's cache folder (a lazy import or not) and ncnn's `from realesr import archs`.
    edges = _edges()
    assert "cache" in edges["archs"] and "archs" in edges["weights"]
    assert "realesr.archs" in {name for name, _ in _imports(SRC / "weights" / "ncnn.py")}
    assert "infer" in edges["__init__"]  # the lazy Upscaler inside a function
