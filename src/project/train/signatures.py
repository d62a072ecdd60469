"""A class's constructor arguments read from its source, without importing it.

The config check needs, for every ``_target_`` a command line changed, the names and type
annotations of the class's ``__init__`` arguments. Importing the class to ask ``inspect`` costs
``import torch`` (~3 s) or ``import lightning`` (~7 s) on a 2-core machine, for an error line the
user should see in about a second. So the source file is located with ``importlib.util.find_spec``
on the top-level package only (which does not run it), parsed with ``ast``, and re-exports (``from
.adamw import AdamW``) are followed. Annotations become real ``typing`` objects for the builtin
types the checker understands (``int``, ``float | None``, ``Literal[...]``, ``tuple[float,
float]``, ...); any other class name becomes an empty stand-in class of that name, which no config
value is an instance of, as with the real class. Whatever cannot be read this way (no
``__init__`` in the class body, a dynamic re-export, a C extension) returns ``None`` and the caller
imports the class as before.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "None": None,
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "Any": Any,
    "Sequence": Sequence,
}


class _Unimported:
    """Base of the stand-ins for annotation classes that were not imported (``Tensor``, ...)."""


@dataclass(frozen=True)
class StaticSignature:
    names: list[str]  # positional-or-keyword and keyword-only arguments, without self
    annotations: dict[str, Any]
    takes_any_keyword: bool  # has **kwargs
    # the base class (dotted) that ``super().__init__(**kwargs)`` passes the rest on to, if any:
    # its arguments are this class's keys too (``split_seed`` of a ``TokenTask`` subclass)
    forwards_to: str | None = None


def _module_file(module: str) -> Path | None:
    """The ``.py`` file of ``module``, found without executing any package ``__init__``."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin is None:  # a namespace package: look in its first directory
        locations = list(spec.submodule_search_locations or [])
        if not locations:
            return None
        path = Path(locations[0]) / "__init__.py"
    else:
        path = Path(spec.origin)
    for part in rest:
        if path.name != "__init__.py":
            return None  # a module has no submodules
        if (path.parent / part).is_dir():  # a package, or a namespace package without __init__
            path = path.parent / part / "__init__.py"
        elif (path.parent / f"{part}.py").is_file():
            path = path.parent / f"{part}.py"
        else:
            return None
    return path if path.suffix == ".py" and path.is_file() else None


@functools.lru_cache(maxsize=64)
def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class _Found:
    obj: ast.ClassDef | ast.FunctionDef  # a class, or a function (a partial's target)
    tree: ast.Module  # the module that defines it: annotations are read in its namespace
    package: str  # for its relative imports


@functools.lru_cache(maxsize=256)
def _find_class(module: str, name: str, depth: int = 0) -> _Found | None:
    path = _module_file(module)
    tree = _parse(path) if path is not None and depth < 4 else None
    if tree is None or path is None:
        return None
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
            return _Found(node, tree, package)
    source = _imported_from(tree, package, name)  # a re-export: from .adamw import AdamW
    return _find_class(source[0], source[1], depth + 1) if source else None


def _imported_from(tree: ast.Module, package: str, name: str) -> tuple[str, str] | None:
    """(module, name) that a top-level ``from module import name [as name]`` binds ``name`` to."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _absolute(package, node.module, node.level)
                    return (source, alias.name) if source else None
    return None


def _is_class(found: _Found, node: ast.Name | ast.Attribute) -> bool:
    """Whether an annotation's name is a class (``Tensor``, ``torch.Tensor``), not an alias."""
    if isinstance(node, ast.Attribute):  # module.Class, with ``import module``
        where = (node.value.id, node.attr) if isinstance(node.value, ast.Name) else None
    elif any(isinstance(n, ast.ClassDef) and n.name == node.id for n in found.tree.body):
        return True
    else:
        where = _imported_from(found.tree, found.package, node.id)
    target = _find_class(*where) if where is not None else None
    return target is not None and isinstance(target.obj, ast.ClassDef)


def _absolute(package: str, module: str | None, level: int) -> str | None:
    if level == 0:
        return module
    parts = package.split(".")
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _annotation(node: ast.expr | None, found: _Found) -> Any:
    """The typing object an annotation spells: a class name becomes a stand-in class, any other
    unknown name (an alias, a ``TypeVar``) ``Any``."""
    if node is None:
        return Any
    if isinstance(node, ast.Constant):
        if node.value is None:
            return type(None)
        if isinstance(node.value, str):  # a quoted annotation
            try:
                return _annotation(ast.parse(node.value, mode="eval").body, found)
            except SyntaxError:
                return Any
        return Any
    if isinstance(node, ast.Name | ast.Attribute):  # int, Optional, typing.Optional, torch.Tensor
        name = node.id if isinstance(node, ast.Name) else node.attr
        if name not in _NAMES:  # a class, not imported: no config value (str, number, list,
            # dict, None) is an instance of it; an alias (_PATH = str | Path) is not checked
            return type(name, (_Unimported,), {}) if _is_class(found, node) else Any
        value = _NAMES[name]
        return type(None) if value is None else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_annotation(node.left, found), _annotation(node.right, found)]  # noqa: UP007
    if isinstance(node, ast.Subscript):
        head = node.value.attr if isinstance(node.value, ast.Attribute) else None
        head = node.value.id if isinstance(node.value, ast.Name) else head
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Literal":
            values = [i.value for i in items if isinstance(i, ast.Constant)]
            return Literal[tuple(values)] if len(values) == len(items) else Any
        args = tuple(_annotation(i, found) for i in items)
        if head == "Optional":
            return typing.Optional[args[0]]  # noqa: UP045
        if head == "Union":
            return typing.Union[args]  # noqa: UP007
        if head in ("tuple", "Tuple") and not any(isinstance(i, ast.Constant) for i in items):
            return tuple[args]  # type: ignore[valid-type]
        if head in ("list", "List", "Sequence", "tuple", "Tuple"):
            return list
        if head in ("dict", "Dict"):
            return dict
    return Any


def static_signature(target: str) -> StaticSignature | None:
    """``target``'s (``"pkg.module.Class"``) ``__init__`` arguments, or None if not readable."""
    module, _, name = target.rpartition(".")
    if not module or module in sys.modules:
        return None  # already imported: inspect is exact and free
    found = _find_class(module, name)
    if found is None:
        return None
    init: ast.FunctionDef | None = None
    if isinstance(found.obj, ast.FunctionDef):
        init = found.obj
    else:
        init = next(
            (n for n in found.obj.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
            None,
        )
    if init is None:
        return None
    args = init.args
    params = [*args.posonlyargs, *args.args] + list(args.kwonlyargs)
    if isinstance(found.obj, ast.ClassDef):
        params = params[1:]  # self
    forwards_to = None
    kwarg = args.kwarg.arg if args.kwarg is not None else None
    if isinstance(found.obj, ast.ClassDef) and kwarg and found.obj.bases:
        forwards_to = _dotted(found.obj.bases[0], found, module)
        if forwards_to is None and forwards_kwargs(init, kwarg):
            return None  # a base we cannot name statically: the caller imports the class
        forwards_to = forwards_to if forwards_kwargs(init, kwarg) else None
    return StaticSignature(
        names=[a.arg for a in params],
        annotations={a.arg: _annotation(a.annotation, found) for a in params},
        takes_any_keyword=args.kwarg is not None,
        forwards_to=forwards_to,
    )


def forwards_kwargs(init: ast.FunctionDef, kwarg: str) -> bool:
    """Whether ``__init__`` passes its ``**kwarg`` on to ``super().__init__`` (or
    ``Base.__init__(self, ...)``)."""
    for node in ast.walk(init):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "__init__"
            and any(
                k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kwarg
                for k in node.keywords
            )
        ):
            return True
    return False


def _dotted(node: ast.expr, found: _Found, module: str) -> str | None:
    """The dotted name of a base class expression (``TokenTask``, ``base.TokenTask``,
    ``nn.Module``) in the module that defines the class."""
    if isinstance(node, ast.Name):
        if any(isinstance(n, ast.ClassDef) and n.name == node.id for n in found.tree.body):
            return f"{module}.{node.id}"
        source = _imported_from(found.tree, found.package, node.id)
        return f"{source[0]}.{source[1]}" if source else None
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        head = node.value.id
        for stmt in found.tree.body:
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if (alias.asname or alias.name.partition(".")[0]) == head:
                        base = alias.name if alias.asname else head
                        return f"{base}.{node.attr}"
        source = _imported_from(found.tree, found.package, head)  # from torch import nn
        return f"{source[0]}.{source[1]}.{node.attr}" if source else None
    return None
