"""A class's constructor arguments, read from its source without importing it when possible.

The config check needs, for every ``_target_`` a command line changed, the names and type
annotations of the class's ``__init__`` arguments. Importing the class to ask ``inspect`` costs
``import lightning`` (seconds) for a task, a module or a callback, for an error line the user
should see in about a second. So the source file is located with ``importlib.util.find_spec`` on
the top-level package only (which does not run it), parsed with ``ast``, and re-exports (``from
.adamw import AdamW``) are followed. Annotations are evaluated by Python itself in a namespace of
the builtin and ``typing`` names; any other name that is a class becomes an empty stand-in class
of that name (no config value is an instance of it, as with the real class), one that is not (an
alias, a ``TypeVar``) ``Any``. What cannot be read this way (a dynamic re-export, a C extension)
is imported and inspected instead.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NAMES: dict[str, Any] = {t.__name__: t for t in (int, float, bool, str, list, tuple, dict)}
_NAMES.update(
    {"None": None, "Any": Any, "Sequence": Sequence, "typing": typing, "List": list, "Tuple": tuple}
)
_NAMES.update({n: getattr(typing, n) for n in ("Optional", "Union", "Literal", "Dict")})
# bases whose constructors take no configurable keys (nn.Module's *args/**kwargs are not options)
_CLOSED_BASES = {"builtins.object", "torch.nn.Module", "torch.nn.modules.module.Module"}


class _Unimported:
    """Base of the stand-ins for annotation classes that were not imported (``Tensor``, ...)."""


@dataclass(frozen=True)
class Signature:
    names: list[str]  # positional-or-keyword and keyword-only arguments, without self
    annotations: dict[str, Any] = field(default_factory=dict)
    takes_any_keyword: bool = False  # has **kwargs
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
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        return None
    # a namespace package: look in its first directory
    path = Path(spec.origin or Path(list(spec.submodule_search_locations or [])[0]) / "__init__.py")
    for part in rest:
        if path.name != "__init__.py":
            return None  # a module has no submodules
        if (path.parent / part).is_dir():  # a package, or a namespace package without __init__
            path = path.parent / part / "__init__.py"
        else:
            path = path.parent / f"{part}.py"
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
    module: str
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
            return _Found(node, tree, module, package)
    source = _imported_from(tree, package, name)  # a re-export: from .adamw import AdamW
    return _find_class(source[0], source[1], depth + 1) if source else None


def _imported_from(tree: ast.Module, package: str, name: str) -> tuple[str, str] | None:
    """(module, name) that a top-level ``from module import name [as name]`` binds ``name`` to."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    parts = package.split(".")  # relative: up node.level - 1 packages
                    base = parts[: len(parts) - (node.level - 1)] if node.level else []
                    source = ".".join([*base, node.module] if node.module else base)
                    return (source, alias.name) if source else None
    return None


def _dotted(found: _Found, head: str, attr: str | None = None) -> str | None:
    """The dotted name that ``head`` (``TokenTask``) or ``head.attr`` (``nn.Module``) stands for
    in the module that defines ``found``."""
    if attr is None and any(
        isinstance(n, ast.ClassDef) and n.name == head for n in found.tree.body
    ):
        return f"{found.module}.{head}"
    source = _imported_from(found.tree, found.package, head)  # from torch import nn
    if source is not None:
        return ".".join([*source, *([attr] if attr else [])])
    for stmt in found.tree.body:  # import torch.nn as nn
        if attr and isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if (alias.asname or alias.name.partition(".")[0]) == head:
                    return f"{alias.name if alias.asname else head}.{attr}"
    return None


def _named(found: _Found, head: str, attr: str | None = None) -> Any:
    """A stand-in class for a class name in an annotation, ``Any`` for any other name."""
    dotted = _dotted(found, head, attr)
    target = _find_class(*dotted.rsplit(".", 1)) if dotted and "." in dotted else None
    if target is not None and isinstance(target.obj, ast.ClassDef):
        return type(attr or head, (_Unimported,), {})
    return Any


class _Namespace(dict):
    """Names an annotation is evaluated with: the builtin and ``typing`` ones, else ``_named``."""

    def __init__(self, found: _Found) -> None:
        super().__init__()
        self.found = found

    def __missing__(self, name: str) -> Any:
        if name in _NAMES:
            return _NAMES[name]
        found = self.found

        class _Module:  # torch.Tensor: looked up when the attribute is read
            def __getattr__(self, attr: str) -> Any:
                return _named(found, name, attr)

        return _named(found, name) if name[:1].isupper() or name.startswith("_") else _Module()


def _annotation(node: ast.expr | None, found: _Found) -> Any:
    if node is None:
        return Any
    try:
        value = eval(ast.unparse(node), {"__builtins__": {}}, _Namespace(found))  # noqa: S307
        if isinstance(value, str):  # a quoted annotation
            value = eval(value, {"__builtins__": {}}, _Namespace(found))  # noqa: S307
    except Exception:  # Callable[...] and the like: not checked
        return Any
    return type(None) if value is None else value


def static_signature(target: str) -> Signature | None:
    """``target``'s (``"pkg.module.Class"``) own ``__init__`` arguments, or None if not readable."""
    module, _, name = target.rpartition(".")
    if not module or module in sys.modules:
        return None  # already imported: inspect is exact and free
    found = _find_class(module, name)
    if found is None:
        return None
    init = found.obj
    if isinstance(init, ast.ClassDef):
        body = [n for n in init.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
        if not body:
            return None
        init = body[0]
    args = init.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs][
        isinstance(found.obj, ast.ClassDef) :
    ]
    forwards_to = None
    cls = found.obj
    if (
        isinstance(cls, ast.ClassDef)
        and cls.bases
        and args.kwarg
        and forwards_kwargs(init, args.kwarg.arg)
    ):
        base = cls.bases[0]
        if isinstance(base, ast.Name):
            forwards_to = _dotted(found, base.id)
        elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
            forwards_to = _dotted(found, base.value.id, base.attr)
        if forwards_to is None:
            return None  # a base we cannot name statically: the caller imports the class
    return Signature(
        names=[a.arg for a in params],
        annotations={a.arg: _annotation(a.annotation, found) for a in params},
        takes_any_keyword=args.kwarg is not None,
        forwards_to=forwards_to,
    )


def forwards_kwargs(init: ast.FunctionDef, kwarg: str) -> bool:
    """Whether ``__init__`` passes its ``**kwarg`` on to ``super().__init__`` (or
    ``Base.__init__(self, ...)``)."""
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "__init__"
        and any(
            k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kwarg
            for k in node.keywords
        )
        for node in ast.walk(init)
    )


def signature(target: str, depth: int = 0) -> Signature | Exception:
    """``target``'s constructor arguments: from the source when possible (no import: keeps a bad
    command line's error fast), else from the imported class (the exception if it does not
    import). A class whose ``__init__`` passes ``**kwargs`` on to its base's has the base's
    arguments too, up the chain: ``split_seed`` is a key of every ``TokenTask`` subclass, and a
    typo under it lists them all."""
    if target in _CLOSED_BASES:
        return Signature([])
    own = static_signature(target)
    if own is None:
        try:
            from project.trust import locate

            obj = locate(target)
            params = inspect.signature(obj).parameters
        except Exception as exc:
            return exc
        try:
            hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
        except Exception:
            hints = {}
        return Signature(
            names=[p for p in params if p not in ("self", "args", "kwargs")],
            annotations={k: hints.get(k, p.annotation) for k, p in params.items()},
            takes_any_keyword=any(p.kind is p.VAR_KEYWORD for p in params.values()),
        )
    if own.forwards_to is None or depth > 8:
        return own
    base = signature(own.forwards_to, depth + 1)
    if isinstance(base, Exception):
        return own
    extra = [n for n in base.names if n not in own.names]
    hints = {**base.annotations, **own.annotations}
    return Signature([*own.names, *extra], hints, base.takes_any_keyword)
