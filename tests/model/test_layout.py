"""The model package's layering: architecture files define layers only; building and loading live in the builder."""

import ast
from pathlib import Path

import model

PACKAGE = Path(model.__file__).parent


def imports_of(relative: str) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    tree = ast.parse((PACKAGE / relative).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_architecture_files_never_import_the_builder_or_the_checkpoint_format():
    for relative in ("resnet_rga.py", "layers/rga.py"):
        assert not imports_of(relative) & {"model.builder", "model.checkpoint", "model.embedder"}, relative


def test_the_checkpoint_format_does_not_import_the_builder():
    assert "model.builder" not in imports_of("checkpoint.py")
    assert "model.checkpoint" in imports_of("builder.py")


def test_public_api():
    from model import Embedder, ModelMeta, build_model, load_checkpoint, save_checkpoint
    from model.builder import build_model as built
    from model.builder import load_checkpoint as loader

    assert (build_model, load_checkpoint) == (built, loader)
    assert all(callable(f) for f in (Embedder, ModelMeta, save_checkpoint))
