"""Which third-party modules a piece of the project imports: a static walk over the source (every import
statement, also inside functions, following first-party modules), so imports that only run later (in a
stage's subprocess, in a function body) count too. Imports guarded by `except ImportError` are optional
and do not count."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The project's own packages (every top-level folder with an __init__.py), the benchmarks and the tests.
FIRST_PARTY = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {"bench", "tests"}
OPTIONAL_HANDLERS = {"ImportError", "ModuleNotFoundError", "Exception"}


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _optional_lines(tree: ast.AST) -> set[int]:
    """Line numbers of import statements inside a try whose handler catches ImportError."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & OPTIONAL_HANDLERS:
            for statement in node.body:
                for inner in ast.walk(statement):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        lines.add(inner.lineno)
    return lines


def _is_gpu_test(node: ast.AST) -> bool:
    return any("gpu" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def _collected_nodes(tree: ast.Module):
    """What `pytest -m gpu` runs of a test module: its top level, and the bodies of gpu-marked tests."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_gpu_test(node):
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports_of_source(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Absolute names imported by this source (relative imports resolved against `module`).

    Test modules (tests.*) count only what collecting them and running their gpu-marked tests imports.
    """
    tree = ast.parse(source)
    optional = _optional_lines(tree)
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    nodes = _collected_nodes(tree) if module.startswith("tests.") else ast.walk(tree)
    for node in nodes:
        if getattr(node, "lineno", None) in optional:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name == "__future__":
                continue
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names if module_file(f"{name}.{alias.name}")}
    return found


def third_party_imports(entries: list[str], extra_sources: list[str] = ()) -> dict[str, set[str]]:
    """Top-level third-party module -> the first-party modules that import it."""
    seen: set[str] = set()
    todo = list(entries)
    users: dict[str, set[str]] = {}

    def note(names: set[str], user: str) -> None:
        for name in names:
            top = name.split(".")[0]
            if top in FIRST_PARTY:
                parts = name.split(".")
                todo.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
            elif top not in sys.stdlib_module_names and top:
                users.setdefault(top, set()).add(user)

    for source in extra_sources:
        note(imports_of_source(source), "<inline script>")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        note(imports_of_source(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"), name)
    return users
