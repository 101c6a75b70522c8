"""The processor's measured multiply-add peak: what no kernel can beat, whatever its BLAS.

``fma_rate`` runs, on every thread at once, a loop of independent chains of fused multiply-adds
on vectors of the processor's widest registers (``y = y * scale + step``, ten chains, enough to
cover the latency of two pipelines) and counts two FLOPs per lane and multiply-add. The chains
are built as LLVM vector instructions, so the count is the machine's, not a vectoriser's guess.
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Independent chains per thread: a multiply-add's latency (4 cycles) times two pipelines, and a
#: margin; ten vectors and two constants fit in the 16 registers of AVX2.
CHAINS = 10


def vector_bits() -> int:
    """The width of the processor's widest vector registers, in bits."""
    features = binding.get_host_cpu_features()
    if features.get("avx512f"):
        return 512
    if features.get("avx") or features.get("avx2"):
        return 256
    return 128


def lanes(dtype) -> int:
    """The lanes of one vector register of ``dtype``."""
    return vector_bits() // (8 * np.dtype(dtype).itemsize)


def _splat(builder, value, vector_type):
    vector = ir.Constant(vector_type, ir.Undefined)
    for lane in range(vector_type.count):
        vector = builder.insert_element(
            vector, value, ir.Constant(ir.IntType(32), lane)
        )
    return vector


@intrinsic
def _chains(typingctx, start, scale, step, count):
    """The sum, over every lane of ``CHAINS`` vectors, of ``count`` steps of ``y = y * scale +
    step`` from ``start + k`` in lane ``k``."""
    real = start
    if not (real in (types.float32, types.float64) and scale == real and step == real):
        return None
    if not isinstance(count, types.Integer):
        return None
    width = lanes(np.float32 if real == types.float32 else np.float64)

    def codegen(context, builder, signature, args):
        first, m, a, n = args
        scalar = context.get_value_type(real)
        vector_type = ir.VectorType(scalar, width)
        m_v, a_v = _splat(builder, m, vector_type), _splat(builder, a, vector_type)
        slots = []
        for chain in range(CHAINS):
            offsets = ir.Constant(
                vector_type, [float(chain * width + lane) for lane in range(width)]
            )
            value = builder.fadd(_splat(builder, first, vector_type), offsets)
            slots.append(cgutils.alloca_once_value(builder, value))
        suffix = f"v{width}f{32 if real == types.float32 else 64}"
        fma = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(vector_type, [vector_type] * 3),
            "llvm.fma." + suffix,
        )
        with cgutils.for_range(builder, n):
            for slot in slots:
                builder.store(builder.call(fma, [builder.load(slot), m_v, a_v]), slot)
        total = ir.Constant(scalar, 0.0)
        for slot in slots:
            vector = builder.load(slot)
            for lane in range(width):
                element = builder.extract_element(
                    vector, ir.Constant(ir.IntType(32), lane)
                )
                total = builder.fadd(total, element)
        return total

    return real(real, real, real, count), codegen


@njit(nogil=True)
def chains(start, scale, step, count):
    """``_chains`` callable from Python, and on several threads at once."""
    return _chains(start, scale, step, count)


def expected(start, scale, step, count, dtype) -> float:
    """What ``chains`` returns, computed lane by lane in float64 from the closed form of the
    recurrence."""
    total = 0.0
    fixed = step / (1.0 - scale)
    for k in range(CHAINS * lanes(dtype)):
        total += scale**count * (start + k - fixed) + fixed
    return total


def _run_after(gate, *args):
    gate.wait()
    chains(*args)


def fma_rate(dtype, threads: int, repeats: int = 5, seconds: float = 0.2) -> float:
    """GFLOP/s of multiply-adds on ``threads`` threads at once: the median of ``repeats`` runs
    of about ``seconds`` each."""
    real = np.dtype(dtype).type
    scale, step = real(0.999), real(0.001)
    chains(real(1), scale, step, 1000)
    start = time.perf_counter()
    chains(real(1), scale, step, 1_000_000)
    count = max(1000, int(1_000_000 * seconds / (time.perf_counter() - start)))
    flops = 2 * CHAINS * lanes(dtype) * count * threads
    rates = []
    # the first run warms every thread up, and is not counted
    for _ in range(repeats + 1):
        gate = threading.Barrier(threads + 1)
        pool = [
            threading.Thread(
                target=_run_after, args=(gate, real(1), scale, step, count)
            )
            for _ in range(threads)
        ]
        for thread in pool:
            thread.start()
        gate.wait()
        start = time.perf_counter()
        for thread in pool:
            thread.join()
        rates.append(flops / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates[1:])
