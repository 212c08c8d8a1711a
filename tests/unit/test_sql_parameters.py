"""SQL reaches PostgreSQL only as shipped text with bound parameters, never built from input.

Every ``execute`` in the shipped code must pass a named query from common/sql (``q("name")``,
whose text is fixed at install time), a string literal, a module-level string constant of
the same file, or a ``psycopg.sql`` composition (identifiers quoted by psycopg). An f-string,
a concatenation or ``%``/``.format`` formatting of a plain string fails here, whatever it
formats; the few reviewed exceptions are listed with the reason they are safe.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "controller", "worker", "bench")
REVIEWED = {
    ("common/db.py", "sql"): "migration files are shipped scripts, applied whole",
    ("controller/leader/loop.py", "f'LISTEN {channel}'"): "channel names come from a constant",
    ("controller/chaos.py", "query"): "_count is only called with the module's constants",
}


def _is_sql_composition(node: ast.expr) -> bool:
    """``sql.SQL("...")`` or ``sql.SQL("...").format(...)`` from psycopg."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        node = node.func.value
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "SQL"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    )


def sql_argument_ok(node: ast.expr, constants: set[str]) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.Name) and node.id in constants:
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "q":
        return True
    return _is_sql_composition(node)


def _module_string_constants(tree: ast.Module) -> set[str]:
    return {
        target.id
        for stmt in tree.body
        if isinstance(stmt, ast.Assign)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
        for target in stmt.targets
        if isinstance(target, ast.Name)
    }


def violations() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), rel)
            constants = _module_string_constants(tree)
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "executemany")
                    and node.args
                ):
                    continue
                arg = node.args[0]
                if sql_argument_ok(arg, constants) or (rel, ast.unparse(arg)) in REVIEWED:
                    continue
                found.append(f"{rel}:{node.lineno}: {ast.unparse(arg)[:60]}")
    return found


def test_every_statement_is_shipped_text_with_bound_parameters() -> None:
    assert violations() == []


def test_the_check_catches_formatted_sql() -> None:
    def ok(source: str) -> bool:
        return sql_argument_ok(ast.parse(source, mode="eval").body, {"QUERY"})

    assert not ok('f"SELECT * FROM jobs WHERE name = {name}"')
    assert not ok('"SELECT * FROM jobs WHERE name = " + name')
    assert not ok('"SELECT * FROM jobs WHERE name = %s" % name')
    assert not ok('"SELECT * FROM {}".format(table)')
    assert not ok("query")
    assert ok('q("job_get")') and ok('"SELECT 1"') and ok("QUERY")
    assert ok('sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))')
