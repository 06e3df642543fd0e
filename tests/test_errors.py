"""Every exception mailflow raises on purpose is in one tree, in
``mailflow/errors.py``, and its docstring draws the whole tree."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mailflow
from mailflow import errors

PACKAGE = Path(mailflow.__file__).parent


def test_every_exception_class_lives_in_the_errors_module() -> None:
    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id.endswith(("Error", "Exception"))
                for base in node.bases
            ):
                elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert elsewhere == []


def test_the_docstring_draws_every_exception_of_the_tree() -> None:
    defined = [
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.MailflowError)
    ]
    tree = errors.__doc__ or ""
    assert len(defined) > 5
    for name in defined:
        assert f"{name}" in tree, name
