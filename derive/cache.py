"""A declaration built in the process: derived, lowered, written into a cache and imported.

:func:`build` takes a declaring function (one written like the catalog's, decorated with
``@register`` or not) or a built :class:`~derive.symbolic.declare.CellSpec`, and returns its
generated kernel module, imported under a package name of its own. The module's files lie in a
per-user cache folder (:func:`cache_dir`) keyed by the declaration's digest, beside the
``__pycache__`` in which Numba caches their compiled kernels, so that the same declaration in
another process starts warm. The same declaration again costs a cache lookup; a changed one
gets a new module, and the old one stays imported for whatever still runs it. Nothing is
written outside the cache folder.

A built module displays its derivation in Jupyter (the equations, the derived backward step
and the diagram: ``_repr_html_`` with the MathML of the HTML site, ``_repr_latex_``).
:mod:`derive.torch`, :mod:`derive.jax` and the NumPy runtime take the module or the declaration
itself.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

__all__ = [
    "CACHE_ENVIRONMENT",
    "PACKAGE_PREFIX",
    "RUNTIME_MODULE",
    "build",
    "built_spec",
    "cache_dir",
    "import_package",
    "load",
]

#: The environment variable that moves the cache folder.
CACHE_ENVIRONMENT = "GATESMITH_CACHE_DIR"
#: Built packages are imported as ``<prefix><digest>``; their module is ``.<variant>``.
PACKAGE_PREFIX = "gatesmith_cell_"
#: The module of a generated package that holds its runtime (``pipeline.RUNTIME``, named here
#: so that importing a built module does not import the pipeline).
RUNTIME_MODULE = "_runtime"

#: The declaration of every module built in this process, by the module's import name.
_SPECS: dict = {}


def cache_dir() -> Path:
    """The folder built declarations are written into: ``$GATESMITH_CACHE_DIR``, else
    ``gatesmith/cells`` in the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    chosen = os.environ.get(CACHE_ENVIRONMENT)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gatesmith" / "cells"


def _root(cache) -> Path:
    """The folder ``cache`` names, else :func:`cache_dir`."""
    return Path(cache).expanduser() if cache is not None else cache_dir()


def _declaration(caller, declaration):
    """The :class:`CellSpec` of ``declaration`` (a declaring function, or a spec)."""
    from .registry import declare
    from .symbolic.declare import CellSpec

    if isinstance(declaration, CellSpec):
        return declaration
    if isinstance(declaration, types.ModuleType):
        raise TypeError(
            f"{caller}: declaration must be a declaring function or a CellSpec; got the "
            f"module {declaration.__name__}, which is built already (pass it where a "
            "module is taken)"
        )
    if not callable(declaration):
        raise TypeError(
            f"{caller}: declaration must be a declaring function (one returning "
            f"cell.build()) or a CellSpec; got {type(declaration).__name__}"
        )
    return declare(declaration)


@functools.cache
def _toolchain() -> str:
    """A digest of everything besides the declaration that shapes a built module: the
    version of gatesmith, SymPy and Jinja, the templates and the code that derives, lowers and
    prints."""
    import jinja2
    import sympy

    from . import __version__
    from .emit.templates import template_dir

    home = Path(__file__).resolve().parent
    digest = hashlib.sha256(
        f"{__version__} {sympy.__version__} {jinja2.__version__}".encode()
    )
    paths = [
        p for part in ("symbolic", "lower", "emit") for p in (home / part).rglob("*.py")
    ]
    for path in sorted([*paths, *template_dir().rglob("*.j2")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _key(spec) -> str:
    digest = hashlib.sha256(f"{spec.fingerprint()}\0{_toolchain()}".encode())
    return digest.hexdigest()[:20]


def build(declaration, *, cache: str | os.PathLike | None = None) -> types.ModuleType:
    """The generated kernel module of ``declaration``, derived and written on first use.

    ``declaration`` is a declaring function (``def mycell(): ... return cell.build()``, with or
    without ``@register``) or a :class:`~derive.symbolic.declare.CellSpec`; ``cache`` a folder
    instead of :func:`cache_dir`. A declaration that cannot be derived raises
    :class:`~derive.symbolic.declare.DeclarationError` naming its line (``Cell In[3], line 7``
    in a notebook).
    """
    spec = _declaration("build", declaration)
    key = _key(spec)
    name = f"{PACKAGE_PREFIX}{key}.{spec.name}"
    module = sys.modules.get(name)
    if module is None:
        folder = _root(cache) / key
        if not (folder / f"{spec.name}.py").is_file():
            _write(folder, spec)
        module = _import(folder, f"{PACKAGE_PREFIX}{key}", spec.name)
    _SPECS[module.__name__] = spec
    _attach_display(module, spec)
    return module


def _write(folder: Path, spec) -> None:
    """Derive and render ``spec``, then move the finished package into ``folder`` in one
    rename: a reader sees all of it or none of it, and a build that fails leaves nothing."""
    from .emit.write import prepare_folder, write_tree
    from .pipeline import Run, kernel_files

    files = kernel_files([spec], Run())  # before anything is written: may raise
    prepare_folder(folder.parent, "the cache folder")
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_tree(files, temporary)
        try:
            temporary.rename(folder)
        except OSError:  # another builder's rename came first: theirs is whole
            if not (folder / f"{spec.name}.py").is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _import(folder: Path, package: str, variant: str) -> types.ModuleType:
    """Import the package in ``folder`` as ``package`` and return its module ``variant``."""
    if package not in sys.modules:
        return import_package(folder, package, variant)
    return importlib.import_module(f"{package}.{variant}")


@functools.cache
def _installed_runtime() -> tuple[bytes, types.ModuleType] | None:
    """The installed ``generated`` package's runtime module and its file's bytes, read once
    (None where it cannot be imported or read)."""
    try:
        runtime = importlib.import_module(f"generated.{RUNTIME_MODULE}")
        return Path(runtime.__file__).read_bytes(), runtime
    except (ImportError, OSError):
        return None


def import_package(folder: Path, package: str, module: str) -> types.ModuleType:
    """Import the generated package in ``folder`` as ``package`` (anew, forgetting any package
    of that name this process imported) and return its module ``module``.

    Where the package's runtime is byte for byte the installed ``generated`` package's, the
    package runs that module: the runtime's functions (the per-step products, the packing)
    compile once in a process, or load from Numba's cache, instead of once for each package,
    which saves about half the memory and a third of the time a declaration's first calls
    cost. A runtime that differs in one byte is imported as the package's own.
    """
    _forget(package)
    spec = importlib.util.spec_from_file_location(
        package, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    parent = importlib.util.module_from_spec(spec)
    installed = _installed_runtime()
    own = folder / f"{RUNTIME_MODULE}.py"
    if installed is not None and own.is_file() and own.read_bytes() == installed[0]:
        sys.modules[f"{package}.{RUNTIME_MODULE}"] = installed[1]
        setattr(parent, RUNTIME_MODULE, installed[1])
    sys.modules[package] = parent
    try:
        spec.loader.exec_module(parent)
        return importlib.import_module(f"{package}.{module}")
    except BaseException:
        _forget(package)
        raise


def _forget(package: str) -> None:
    """Remove ``package`` and its modules from ``sys.modules``."""
    for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
        del sys.modules[key]


def load(name: str, cache: str | os.PathLike | None = None) -> types.ModuleType | None:
    """The built module imported as ``name`` (``gatesmith_cell_<digest>.<variant>``), from the
    cache folder when this process has not imported it: how a pickled model that runs a built
    cell finds it again. None when ``name`` is not a built module's or the cache lacks it."""
    package, _, variant = name.partition(".")
    if not package.startswith(PACKAGE_PREFIX) or not variant.isidentifier():
        return None
    if name in sys.modules:
        return sys.modules[name]
    folder = _root(cache) / package.removeprefix(PACKAGE_PREFIX)
    if not (folder / f"{variant}.py").is_file():
        return None
    return _import(folder, package, variant)


def built_spec(module: types.ModuleType):
    """The declaration ``module`` was built from in this process, or None."""
    return _SPECS.get(getattr(module, "__name__", None))


# -- display in Jupyter ------------------------------------------------------------------------


def _attach_display(module: types.ModuleType, spec) -> None:
    """Give ``module`` the methods Jupyter's display calls (module functions taking nothing),
    each computing its text on first use."""
    if getattr(module, "_repr_html_", None) is not None:
        return
    from .emit.display import html, latex

    module._repr_html_ = functools.cache(functools.partial(html, spec))
    module._repr_latex_ = functools.cache(functools.partial(latex, spec))
