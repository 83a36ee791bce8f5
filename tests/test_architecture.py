"""The package's rooms and the one-way dependency rule (docs/design.md, "Rooms")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import align3d_ad

PACKAGE = Path(align3d_ad.__file__).parent

#: Modules every room may use: they import nothing but each other.
FOUNDATION = {"_version", "versions", "errors", "_checks", "_atomic", "_threads", "config", "device",
              "distributed", "progress", "profiling"}  # fmt: skip
#: What each room may import besides the foundation (and itself).
ALLOWED = {
    "data": set(),
    "synth": {"data"},
    "render": {"data"},
    "viz": {"data", "render", "evaluate"},
    "backbone": {"data", "render"},
    "model": {"data", "render", "backbone"},
    "training": {"data", "render", "backbone", "model"},
    "evaluate": {"data", "render", "backbone", "model", "training"},
    "app": {"data", "synth", "render", "viz", "backbone", "model", "training", "evaluate"},
    "__main__": {"app"},
}


def _module_name(path: Path) -> tuple[list[str], bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return (parts[:-1] if is_package else parts), is_package


def _runtime_imports(tree: ast.AST):
    """Import nodes outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any depth of the file, TYPE_CHECKING excluded)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts, is_package = _module_name(path)
        modules[".".join(parts)] = (path, parts, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, parts, is_package) in modules.items():
        targets = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("align3d_ad")}
                continue
            if node.level:
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("align3d_ad"):
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                targets.add(sub if sub in modules else target)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        room = _room(module)
        if room == "<root>":  # the top-level API may re-export any library room, never the app
            bad += [f"{module} -> {t}" for t in targets if _room(t) == "app"]
            continue
        allowed = FOUNDATION | (FOUNDATION if room in FOUNDATION else ALLOWED.get(room, set()))
        if room not in FOUNDATION and room not in ALLOWED:
            bad.append(f"{module}: room {room!r} is not in the dependency rule")
        bad += [
            f"{module} -> {t}" for t in targets
            if _room(t) != room and (_room(t) not in allowed or _room(t) == "<root>")
        ]  # fmt: skip
    return sorted(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (package __init__ edges excluded)."""
    inits = {m for m in graph if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()}
    edges = {m: {t for t in ts if t not in inits} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_import_follows_the_one_way_rule():
    assert _violations(import_graph()) == []


def test_there_are_no_import_circles():
    assert _cycles(import_graph()) == []


def test_the_rule_check_catches_a_backward_import():
    graph = import_graph()
    graph["align3d_ad.render.camera"] = graph["align3d_ad.render.camera"] | {"align3d_ad.backbone.loader"}
    graph["align3d_ad.config"] = graph["align3d_ad.config"] | {"align3d_ad.app.cli"}
    assert _violations(graph) == [
        "align3d_ad.config -> align3d_ad.app.cli",
        "align3d_ad.render.camera -> align3d_ad.backbone.loader",
    ]
    graph["align3d_ad.model.head"] = graph["align3d_ad.model.head"] | {"align3d_ad.model.detector"}
    graph["align3d_ad.model.detector"] = graph["align3d_ad.model.detector"] | {"align3d_ad.model.head"}
    assert any({"align3d_ad.model.detector", "align3d_ad.model.head"} <= set(c) for c in _cycles(graph))


@pytest.mark.parametrize("name", sorted(set(align3d_ad.__all__) - {"__version__"}))
def test_the_notebook_api_resolves(name):
    assert getattr(align3d_ad, name) is not None


def test_import_is_lazy():
    code = ("import sys, align3d_ad; heavy = [m for m in ('torch', 'numpy', 'open_clip', "
            "'align3d_ad.model', 'align3d_ad.app') if m in sys.modules]; print(heavy)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
