"""Handlers are thin adapters: no SQL of their own, no route module imports another (what two
adapters share lives in a shared module: common, bodies, schemas, links, transfer, resumable), and
one http_date."""
from __future__ import annotations

import ast
import re
from pathlib import Path

HANDLERS = Path(__file__).resolve().parent.parent / "sagestore" / "handlers"
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b|\.execute\(")


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(HANDLERS.glob("*.py"))}


def is_route_module(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == "routes"
                                                    for target in node.targets) for node in tree.body)


def test_no_sql_in_handlers():
    found = [f"{path.name}:{number}: {line.strip()}" for path in sorted(HANDLERS.glob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if SQL.search(line)]
    assert not found, "SQL belongs in sagestore/db/:\n" + "\n".join(found)


def test_no_route_module_imports_another():
    trees = modules()
    route_modules = {name for name, tree in trees.items() if is_route_module(tree)}
    assert {"objects", "signed", "shares", "osdu", "tus", "ietf", "sessions", "offset_uploads"} <= route_modules
    found = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported = {node.module} if node.module else {alias.name for alias in node.names}
                found += [f"{name} imports {other}" for other in imported & route_modules]
    assert not found, found


def test_one_http_date():
    definitions = [name for name, tree in modules().items() for node in ast.walk(tree)
                   if isinstance(node, ast.FunctionDef) and node.name == "http_date"]
    assert definitions == ["common"]
