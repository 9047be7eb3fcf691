"""The error tree is closed: every error class lives in ``core.errors`` and is named in its
docstring, and nothing outside it patches ``status``, ``retryable`` or ``param`` onto an
error instance (one table maps them at the edge, ``api/errors.py``)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from modelgrid.core import errors

SRC = Path(errors.__file__).resolve().parents[1]
PATCHED = {"status", "retryable", "param"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(SRC.rglob("*.py"))]


def test_every_exception_class_is_in_core_errors() -> None:
    outside = []
    for path, tree in _modules():
        if path.name == "errors.py" and path.parent.name == "core":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    outside.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert outside == []


def test_every_error_class_is_named_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    classes = [
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.ModelgridError)
    ]
    assert len(classes) > 15
    missing = [n for n in classes if n != "ModelgridError" and f"``{n}``" not in doc]
    assert missing == []
    assert sorted(set(classes)) == sorted(n for n in errors.__all__ if n in classes)


def _error_names(tree: ast.Module) -> set[str]:
    """Names that hold an error in a module: bound by ``except … as NAME``, or assigned a
    call of a class whose name ends in ``Error`` (database rows have a ``status`` too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func).endswith("Error")
        ):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_no_error_attribute_is_patched_outside_core_errors() -> None:
    patched = []
    for path, tree in _modules():
        if path.name == "errors.py" and path.parent.name == "core":
            continue
        errors_here = _error_names(tree)
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for t in targets:
                if (
                    isinstance(t, ast.Attribute)
                    and t.attr in PATCHED
                    and isinstance(t.value, ast.Name)
                    and t.value.id in errors_here
                ):
                    patched.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(t)}")
    assert patched == []


def test_the_patch_check_sees_a_patch() -> None:
    tree = ast.parse(
        "try:\n    pass\nexcept ValueError as exc:\n    exc.status = 500\n"
        "err = UpstreamError('x')\nerr.retryable = True\nrow.status = 'done'\n"
    )
    assert _error_names(tree) == {"exc", "err"}


def test_at_names_another_parameter_on_a_copy() -> None:
    exc = errors.ContextLengthExceededError("too long", param="messages")
    moved = exc.at("prompt")
    assert (type(moved), moved.param, moved.message, moved.code) == (
        errors.ContextLengthExceededError,
        "prompt",
        "too long",
        "context_length_exceeded",
    )
    assert exc.param == "messages"
