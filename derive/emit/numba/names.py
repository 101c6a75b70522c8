"""The names the Numba backend reserves: what its generated modules use for themselves (module
globals, the kernels' locals and arguments, the interface's arguments) and Python's builtins; a
declared name may take none of them, nor start with one of its prefixes (the prefixes of the
arrays it names by role, ``kernel._NAMES``). A test keeps these in step with the generated
code. Pure data: the symbolic core reads it through :mod:`derive.backends`."""

from __future__ import annotations

import builtins

__all__ = ["PACKAGE_NAMES", "RESERVED", "RESERVED_PREFIXES"]

RESERVED = frozenset({
    "t", "b", "j", "unit", "row", "first", "last", "steps", "batch", "real", "grad", "no_bias", "dx",
    "seq_x", "lengths", "d_seq_y", "x", "params", "initial_states", "dys", "d_final_states",
    "tape", "dtype", "seed", "np", "njit", "sys", "CACHE", "FUSED", "CellInterface", "VARIANT", "panels",
    "input_grad",
    "STATES", "PARAMS", "OUTPUT", "HYPERS", "hypers", "SIZES", "STATE_SIZES", "PARAM_SHAPES", "PARAM_BLOCKS", "PARAM_INIT", "MASKS", "masks", "DROPPED_WEIGHTS",
    "SIZE_CONSTRAINTS", "SAVED_PER_STEP", "forward", "backward", "forward_kernel",
    "backward_kernel", "infer_kernel", "states", "init_params", "param_shapes", "saved_bytes_per_step",
}) | frozenset(dir(builtins))  # fmt: skip
RESERVED_PREFIXES = (
    "d_", "tmp", "_", "acc_", "buf_", "save_", "seq_", "step_", "k_", "dk_", "packed_",
    "sum_", "size_", "const_", "init_", "dfinal_", "dnext_", "dprev_", "row_", "mask_",
)  # fmt: skip
#: What a generated package's ``__init__`` defines: a variant may not be named so.
PACKAGE_NAMES = frozenset({"VARIANTS", "load", "importlib", "retain_freed_memory"})
