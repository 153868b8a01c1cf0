"""The shape of the package and the notebooks: layers without cycles, and notebooks that only tell the story."""

import ast
import json
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "robustode"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# Lower layers never import higher ones: numerics and plumbing, then the store and the verdict, then the
# chapters, then what orchestrates or reports across chapters.
LAYERS = {
    0: ("core", "paths", "seeding", "results", "profiles", "tables", "figures", "data", "models", "compare", "reference",
        "wording"),
    1: ("store", "units", "verdict", "display"),
    2: ("chapters",),
    3: ("plan", "claims", "report", "errata", "reproduce", "book", "piece", "cli", "__main__", "__init__", "cluster",
        "browser_check", "bibstyle"),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for layer, names in LAYERS.items():
        if top in names:
            return layer
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imports_of(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustode"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from robustode.chapters import anode`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("robustode"))
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    return {m for m in found if m in modules}


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_higher_layer(module):
    if module == "robustode":
        return
    mine = layer_of(module)
    upward = sorted(m for m in imports_of(MODULES[module], top_level_only=False) if m != "robustode" and layer_of(m) > mine)
    assert not upward, f"{module} (layer {mine}) imports {upward}"


def test_the_import_graph_has_no_cycle():
    graph = {m: imports_of(p, top_level_only=False) - {m} for m, p in MODULES.items()}
    # a package's __init__ importing its own submodules is how the chapters expose them, not a cycle
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    seen, stack = set(), []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node):], node]))
        if node in seen:
            return
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            visit(dep)
        stack.pop()
        seen.add(node)

    for module in sorted(graph):
        visit(module)


DISPLAY_CALLS = ("show", "show_tiers")


def _is_display(stmt: ast.stmt) -> bool:
    """A statement that only displays: show(...) / show_tiers(...), or a figure drawn by a chapter's figures module."""
    value = stmt.value if isinstance(stmt, ast.Expr | ast.Assign) else None
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
    return name in DISPLAY_CALLS or owner == "figs"


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebooks_define_nothing_and_loop_only_to_display(notebook):
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    for cell in (c for c in cells if c["cell_type"] == "code"):
        tree = ast.parse("".join(cell["source"]))
        for node in ast.walk(tree):
            assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Lambda) or isinstance(node, ast.Lambda), \
                f"{notebook}: a definition in a notebook cell"
            if isinstance(node, ast.For | ast.While):
                assert all(_is_display(s) for s in node.body), f"{notebook}: a loop that does more than display"
