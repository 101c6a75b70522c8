"""The multiply-add peak the benchmark reports: the chains compute what they claim, in vectors
of the processor's width, and the rate counts them."""

import platform

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from derive import peak


def _close(dtype, got, start, scale, step, count):
    """``got`` against the closed form, to the rounding of ``count`` multiply-adds per lane."""
    want = peak.expected(start, scale, step, count, dtype)
    lanes = peak.CHAINS * peak.lanes(dtype)
    size = sum(abs(start + k) + abs(step / (1 - scale)) for k in range(lanes))
    eps = np.finfo(dtype).eps
    assert abs(float(got) - want) <= 8 * eps * (count + lanes) * size, (got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_chains_compute_the_recurrence_in_every_lane(dtype):
    real = np.dtype(dtype).type
    start, scale, step = real(0.5), real(0.75), real(0.25)
    for count in (0, 1, 7, 100):
        got = peak.chains(start, scale, step, count)
        assert isinstance(got, float | real)
        _close(dtype, got, float(start), float(scale), float(step), count)
    # no steps: every lane keeps its start, start + k in lane k
    lanes = peak.CHAINS * peak.lanes(dtype)
    assert peak.chains(start, scale, step, 0) == pytest.approx(
        lanes * 0.5 + lanes * (lanes - 1) / 2
    )


@settings(max_examples=40, deadline=None)
@given(
    start=st.floats(-8, 8),
    scale=st.floats(0.0, 0.999),
    step=st.floats(-1, 1),
    count=st.integers(0, 300),
)
def test_the_chains_match_the_closed_form_for_any_recurrence(start, scale, step, count):
    real = np.float64
    _close(real, peak.chains(real(start), real(scale), real(step), count), start, scale,
           step, count)  # fmt: skip


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 instructions"
)
def test_the_loop_runs_fused_multiply_adds_on_the_widest_registers():
    peak.chains(np.float32(1), np.float32(0.5), np.float32(0.5), 1)
    asm = next(
        text
        for signature, text in peak.chains.inspect_asm().items()
        if signature[0] == peak.types.float32
    )
    register = {512: "zmm", 256: "ymm", 128: "xmm"}[peak.vector_bits()]
    fused = [line for line in asm.splitlines() if "vfmadd" in line and "ps" in line]
    # one instruction per chain and iteration (unrolled loops repeat them), none on scalars
    assert len(fused) >= peak.CHAINS
    assert all(f"%{register}" in line for line in fused), fused[:3]


def test_the_rate_counts_two_flops_per_lane_and_multiply_add(monkeypatch):
    """With the clock stubbed to advance one second per reading, the rate is the count of
    FLOPs of every thread's chains, in GFLOP."""
    ticks = iter(range(1000))
    monkeypatch.setattr(peak.time, "perf_counter", lambda: float(next(ticks)))
    counts = []
    monkeypatch.setattr(peak, "chains", lambda start, scale, step, n: counts.append(n))
    rate = peak.fma_rate(np.float32, threads=2, repeats=3, seconds=5.0)
    calibrated = counts[2]  # after the compiling call and the calibrating call
    assert counts[1] == 1_000_000 and calibrated == 5_000_000
    assert (
        counts[2:] == [calibrated] * 2 * 4
    )  # two threads, a warm-up run and three timed
    assert rate == 2 * peak.CHAINS * peak.lanes(np.float32) * calibrated * 2 / 1e9
