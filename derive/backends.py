"""The enabled backends, and the names a declaration may not take.

A backend is one unit, a folder: ``derive/emit/<name>/`` holds its printer, its table of how to
print each activation, the names it reserves (``names.py``, pure data) and the function that
renders its files; ``templates/<name>/`` holds its templates, its runtime among them. The
symbolic core holds mathematics only: which names a declaration may use is the union of what
the enabled backends reserve, read here at the first name a declaration checks. (The derivation
documents escape every name they print and reserve none.)
"""

from __future__ import annotations

import importlib
from functools import cache

__all__ = ["ENABLED", "reserved"]

#: The backends every declaration is generated for.
ENABLED = ("numba", "cuda")


@cache
def reserved() -> tuple[frozenset[str], tuple[str, ...], frozenset[str]]:
    """The names, the name prefixes and the variant names the enabled backends reserve."""
    names: set[str] = set()
    prefixes: list[str] = []
    packages: set[str] = set()
    for backend in ENABLED:
        table = importlib.import_module(f"derive.emit.{backend}.names")
        names |= table.RESERVED
        prefixes += [p for p in table.RESERVED_PREFIXES if p not in prefixes]
        packages |= table.PACKAGE_NAMES
    return frozenset(names), tuple(prefixes), frozenset(packages)
