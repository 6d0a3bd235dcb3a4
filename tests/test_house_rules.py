"""The house rules that can be read off the source, checked on every run.

- No import cycles in `sagestore/`. Every import counts, those inside functions too: a deferred
  import only hides a cycle until the function runs. Imports under `if TYPE_CHECKING:` do not
  count (they never run). Importing `a.b.c` from outside `a.b` also runs `a/__init__` and
  `a/b/__init__`, so it depends on them too.
- SQL on the upload tables (uploads, upload_parts, upload_part_leases) lives in one module, the
  engine's table module.
- No issue numbers or seed files cited in the package: history belongs in commit messages.
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sagestore"
UPLOAD_TABLE_MODULE = "sagestore.uploads.table"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The sagestore modules `name` (at `path`) imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # the module itself, or the nearest enclosing module that exists (a name imported from it)
        while target and target not in known:
            target = target.rpartition(".")[0]
        if not target.startswith("sagestore"):
            return
        found.add(target)
        # importing it first runs every enclosing package's __init__ the importer is not inside
        parent = target.rpartition(".")[0]
        while parent:
            if not (name == parent or name.startswith(parent + ".")):
                found.add(parent)
            parent = parent.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                add(candidate if candidate in known else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, name, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_import_graph_finds_a_cycle_when_there_is_one():
    """The check itself: a made-up graph with a cycle through three modules, and one without."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert len(graph) > 50
    # app.py imports the handlers at its top; cli.py imports the app inside a function
    assert "sagestore.handlers.tus" in graph["sagestore.app"]
    assert "sagestore.app" in graph["sagestore.cli"]


def test_no_import_cycles_in_sagestore():
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(component) for component in found)


@functools.lru_cache(maxsize=None)
def defined_names(path: Path) -> frozenset[str]:
    """The names a module defines or imports at its top level (what `from module import name` finds),
    including those under a top-level if, try or with."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return frozenset(names)


def test_every_name_imported_from_sagestore_exists():
    """Imports inside functions run late: a name moved away breaks them only when they run."""
    known = modules()
    missing = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            if source not in known:
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" not in known and alias.name not in defined_names(known[source]):
                    missing.append(f"{name}: from {source} import {alias.name}")
    assert missing == [], "\n".join(missing)


UPLOAD_TABLES = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+(uploads|upload_parts|upload_part_leases)\b", re.I)


def test_sql_on_the_upload_tables_lives_in_the_table_module_only():
    homes = sorted(name for name, path in modules().items() if UPLOAD_TABLES.search(path.read_text()))
    assert homes == [UPLOAD_TABLE_MODULE]


HISTORY = re.compile(r"\b(issues?|seeds?) #?\d+|\bseed 0\d\d\b|\bissue \d+'s\b", re.I)


def test_no_issue_or_seed_citations_in_the_package():
    """Docstrings and comments say what the code does; its history is in the commit messages."""
    cited = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*")) if path.suffix in (".py", ".js", ".html", ".css", ".sql")
             for number, line in enumerate(path.read_text().splitlines(), start=1) if HISTORY.search(line)]
    assert cited == [], "\n".join(cited)


def test_the_state_table_in_docs_architecture_is_the_engines():
    from sagestore.uploads import TRANSITIONS
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", line)
        if match and match.group(1) in TRANSITIONS:
            sources = () if match.group(2).strip() == "(none)" else tuple(s.strip() for s in match.group(2).split(","))
            target = None if match.group(3).strip() == "(unchanged)" else match.group(3).strip()
            rows[match.group(1)] = (sources, target)
    assert rows == {name: (t.sources, t.target) for name, t in TRANSITIONS.items()}
