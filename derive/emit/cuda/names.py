"""The names the CUDA backend reserves beyond the Numba backend's (whose arrays, sizes and
locals it prints alike): the modules and locals of its kernels and host functions. Pure data,
read through :mod:`derive.backends`."""

from __future__ import annotations

__all__ = ["PACKAGE_NAMES", "RESERVED", "RESERVED_PREFIXES"]

RESERVED = frozenset({"cuda", "math", "real", "DEVICE", "CACHE", "forward_kernel",
                      "infer_kernel", "backward_kernel"})  # fmt: skip
RESERVED_PREFIXES = ("_",)
#: The CUDA package is the subpackage ``cuda`` of the generated package: no variant takes it.
PACKAGE_NAMES = frozenset({"cuda"})
