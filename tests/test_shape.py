"""The package's shape holds: no module past MAX_LINES (migrations aside), no import circle between
its modules (imports under ``if TYPE_CHECKING:`` aside: they never run), and no import inside a
function except the command line's lazy ones, which keep each command's start-up to what it uses.
The tests' side: no test module or script imports from a conftest.py, which holds only fixtures
(what tests and scripts share besides fixtures lives in tests/support/)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "coretrack"
MAX_LINES = 400
# Where an import inside a function is deliberate: a command loads only what it runs.
LAZY_IMPORTS_ALLOWED = ("cli",)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name, migrations aside (each one is frozen as written)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Each import that runs, and whether it sits inside a function."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(tree, False)
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package's modules an import statement loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        base = module.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = {source} if source in known else set()
    found |= {f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known}
    return found


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Who imports whom among the package's modules, and the imports made inside functions."""
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = {name: set() for name in found}
    lazy: list[str] = []
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, in_function in _imports(tree):
            targets = _targets(name, path.name == "__init__.py", node, known)
            graph[name] |= targets - {name}
            top = name.split(".")[1] if "." in name else name
            if in_function and top not in LAZY_IMPORTS_ALLOWED and (targets or isinstance(node, ast.ImportFrom)):
                lazy.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return graph, lazy


def conftest_imports(paths: list[Path], root: Path = REPO) -> list[str]:
    """Where these files import from a conftest module (any conftest.py of the test folders)."""
    found = []
    for path in paths:
        for node, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(name.split(".")[-1] == "conftest" for name in names):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(groups)


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(PACKAGE.parent)): lines for path in modules().values()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these by concern (at most {MAX_LINES} lines a module)"


def test_no_modules_import_each_other_in_a_circle():
    graph, _ = import_graph()
    assert len(graph) > 40  # the package was read
    assert circles(graph) == []


def test_no_import_hides_inside_a_function_outside_the_command_line():
    assert import_graph()[1] == []


def test_no_test_module_or_script_imports_from_conftest():
    paths = sorted((REPO / "tests").rglob("*.py")) + sorted((REPO / "scripts").rglob("*.py"))
    assert len(paths) > 60  # the tests were read
    assert conftest_imports(paths) == [], "import from tests/support/ (conftest.py holds only fixtures)"


def test_the_checks_find_what_they_look_for():
    """A circle, a lazy import and a module of the package are all seen (the checks cannot pass
    by reading nothing)."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("import os\nif TYPE_CHECKING:\n    import x\ndef f():\n    from . import y\n")
    assert [(type(node).__name__, inside) for node, inside in _imports(tree)] == [
        ("Import", False), ("ImportFrom", True)]
    assert "coretrack.app" in modules() and "coretrack" in modules()


def test_the_conftest_check_sees_every_way_of_importing_from_it(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("from conftest import X\nimport conftest\nimport e2e.conftest\n"
                      "def f():\n    from conftest import Y\nfrom support.apache import Z\n")
    lines = [where.rsplit(":", 1)[1] for where in conftest_imports([sample], root=tmp_path)]
    assert lines == ["1", "2", "3", "5"]
