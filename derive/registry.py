"""The registry: variant names to the functions that declare them."""

from __future__ import annotations

import errno
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from functools import cache
from pathlib import Path

from .symbolic.declare import CellSpec, DeclarationError
from .symbolic.declare import place as _place

__all__ = [
    "SpecFileError",
    "UnknownVariantError",
    "declare",
    "get",
    "load_file",
    "names",
    "register",
]

_DECLARATIONS: dict[str, Callable[[], CellSpec]] = {}
_ORIGINS: dict[str, Path] = {}  # the file a user's variant was loaded from


class UnknownVariantError(KeyError):
    """A variant name the registry does not know; the message lists the known ones."""

    def __str__(self) -> str:
        return self.args[0]


class SpecFileError(ValueError):
    """A user's declaration file that cannot be loaded; the message names the file and line."""


def register(function: Callable[[], CellSpec]) -> Callable[[], CellSpec]:
    """Decorator: register a declaration under the function's name."""
    name = function.__name__
    if name in _DECLARATIONS and _same_place(_DECLARATIONS[name], function):
        # the same function declared again: a notebook cell run again, a module reloaded
        get.cache_clear()
    elif name in _DECLARATIONS:
        raise ValueError(
            f"variant {name!r} is registered twice (it is already declared, perhaps as a "
            "built-in variant); give the declaring function another name"
        )
    _DECLARATIONS[name] = function
    return function


def _same_place(old: Callable, new: Callable) -> bool:
    """Whether ``new`` declares again what ``old`` declared: the same qualified name in the
    same module, one that is not the catalog's."""
    return (
        old.__module__ == new.__module__
        and old.__qualname__ == new.__qualname__
        and not old.__module__.startswith(f"{__package__}.cells")
    )


def names() -> tuple[str, ...]:
    """The registered variant names, in declaration order."""
    _load_catalog()
    return tuple(_DECLARATIONS)


@cache
def get(name: str) -> CellSpec:
    """The checked declaration of a registered variant."""
    _load_catalog()
    if name not in _DECLARATIONS:
        known = ", ".join(_DECLARATIONS)
        raise UnknownVariantError(f"unknown variant {name!r}; known variants: {known}")
    spec = declare(_DECLARATIONS[name])
    if spec.name != name:
        raise ValueError(
            f"the declaration registered as {name!r} builds a cell named {spec.name!r}"
        )
    return spec


def declare(function: Callable[[], CellSpec]) -> CellSpec:
    """Call a declaring function: its :class:`CellSpec`, or an error naming its line (a
    :class:`DeclarationError` from the builder, else a :class:`SpecFileError`)."""
    try:
        spec = function()
    except DeclarationError:
        raise
    except Exception as error:  # a user's declaration that fails outside the builder
        where = _where(error, Path(function.__code__.co_filename))
        raise SpecFileError(
            f"{where}: declaring {function.__name__!r} failed: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(spec, CellSpec):
        raise SpecFileError(
            f"{_place(function.__code__.co_filename, function.__code__.co_firstlineno)}: "
            f"{function.__name__!r} returned {type(spec).__name__}, not a cell; end it "
            "with `return cell.build()`"
        )
    return spec


def _load_catalog() -> None:
    from . import cells  # noqa: F401  (importing registers the built-in variants)


def _where(error: Exception, home: Path) -> str:
    """Where in ``home`` ``error`` arose: the innermost frame of its traceback there."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve() == home.resolve()]  # fmt: skip
    return _place(str(home), frames[-1].lineno) if frames else _place(str(home))


def load_file(path: str | Path) -> tuple[str, ...]:
    """Run a user's declaration file; returns the names of the variants it registers.

    The file declares cells as the built-in catalog does: functions decorated with
    ``@register`` whose names are the variants' names.
    """
    path = Path(path)
    try:
        path.stat()
    except OSError as error:
        what = ("a symbolic link that leads round in a loop" if error.errno == errno.ELOOP
                else "no such file" if error.errno == errno.ENOENT
                else os.strerror(error.errno or 0).lower())  # fmt: skip
        raise SpecFileError(f"--spec {path}: {what}") from None
    if path.is_dir():
        raise SpecFileError(
            f"--spec {path}: a directory; --spec takes a Python file declaring cells"
        )
    if not path.is_file():
        raise SpecFileError(f"--spec {path}: not a regular file")
    _load_catalog()
    # loading a file again replaces what it declared before
    for name in [n for n, origin in _ORIGINS.items() if origin == path.resolve()]:
        del _DECLARATIONS[name], _ORIGINS[name]
    get.cache_clear()
    before = set(_DECLARATIONS)
    module_name = f"_gatesmith_spec_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecFileError(f"--spec {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as error:
        # a declaration file runs to declare, not to end the command: exit(0) there would
        # make generate, check and verify succeed having done nothing
        raise SpecFileError(
            f"{_where(error, path)}: the spec file exited (SystemExit({error.code!r})) while "
            "it was loaded; a spec file only declares cells, so remove the exit"
        ) from error
    except Exception as error:
        raise SpecFileError(
            f"{_where(error, path)}: {type(error).__name__}: {error}"
        ) from error
    added = tuple(n for n in _DECLARATIONS if n not in before)
    _ORIGINS.update(dict.fromkeys(added, path.resolve()))
    if not added:
        raise SpecFileError(
            f"{path}: declares no variant; decorate each declaring function with "
            "@register (from derive.registry import register)"
        )
    return added
