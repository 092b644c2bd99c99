"""The folder is the layer: a module imports only from its own layer or the layers below it, and no
modules import each other in a circle (docs/ARCHITECTURE.md draws the same stack)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fishdip"

# bottom to top; a package (folder) or a top-level module is one entry
LAYERS = [
    {"errors", "paths", "io", "options", "text", "version", "structures"},
    {"formats"},
    {"data"},
    {"models"},
    {"sparse"},
    {"evaluation"},
    {"tasks"},
    {"training"},
    {"reports"},
    {"runs"},
    {"api", "cli", "__init__", "__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(module: str) -> str:
    """fishdip.runs.grid -> runs; fishdip.cli -> cli; fishdip -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fishdip":
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "fishdip"}
    return out


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_every_folder_and_module_has_a_layer():
    units = {_unit(m) for m in _modules()}
    assert units == set(LEVEL), f"give these a layer: {units - set(LEVEL)}; gone: {set(LEVEL) - units}"


def test_nothing_imports_upward():
    upward = []
    for module, path in _modules().items():
        me = _unit(module)
        for target in _imports(path):  # function-level imports too: a late import is still a dependency
            if LEVEL[_unit(target)] > LEVEL[me]:
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_no_import_circles():
    modules = _modules()
    graph = {m: {t for t in _imports(p, top_level_only=True) if t in modules and t != m} for m, p in modules.items()}
    done, on_path = set(), []

    def visit(m: str) -> None:
        if m in on_path:
            raise AssertionError("import circle: " + " -> ".join(on_path[on_path.index(m):] + [m]))
        if m in done:
            return
        on_path.append(m)
        for t in sorted(graph[m]):
            visit(t)
        on_path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
