"""The registry: variant names to the functions that declare them."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from .declare import CellSpec

__all__ = ["UnknownVariantError", "declare", "get", "names", "register"]

_DECLARATIONS: dict[str, Callable[[], CellSpec]] = {}


class UnknownVariantError(KeyError):
    """A variant name the registry does not know; the message lists the known ones."""

    def __str__(self) -> str:
        return self.args[0]


def register(function: Callable[[], CellSpec]) -> Callable[[], CellSpec]:
    """Decorator: register a declaration under the function's name."""
    name = function.__name__
    if name in _DECLARATIONS:
        raise ValueError(f"variant {name!r} is registered twice")
    _DECLARATIONS[name] = function
    return function


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
    spec = _DECLARATIONS[name]()
    if spec.name != name:
        raise ValueError(
            f"the declaration registered as {name!r} builds a cell named {spec.name!r}"
        )
    return spec


def declare(function: Callable[[], CellSpec]) -> CellSpec:
    """Build a declaration outside the registry (a user's spec file)."""
    return function()


def _load_catalog() -> None:
    from . import cells  # noqa: F401  (importing registers the built-in variants)
