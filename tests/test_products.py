"""The per-step products of the generated runtime (``_pack``, ``_product``, ``_product_add``),
tested directly against NumPy in float64, for any sizes: tiles of each width the processor
runs and every height, partial panels, empty sizes, strided arrays, with and without a bias;
and the choices the runtime times on the processor and keeps (``tuning``)."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from generated import _runtime as module

DTYPES = (np.float32, np.float64)
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-13}
#: The tile widths this processor runs (their code alone is compiled): 512 and 256 bits with
#: AVX-512, else 256
WIDTHS = module._NATIVE


@contextlib.contextmanager
def choices(**chosen):
    """The runtime's choices set to ``chosen`` inside, as they were after."""
    before = module.tuning()
    module.set_tuning(**chosen)
    try:
        yield
    finally:
        module.set_tuning(**before)


def _arrays(rng, dtype, rows, depth, columns, strided):
    """The source, the matrix, the bias and out; with ``strided``, views with a step of two
    in their columns (and the bias's)."""
    step = 2 if strided else 1

    def draw(*shape):
        wide = (*shape[:-1], shape[-1] * step)
        return rng.standard_normal(wide).astype(dtype)[..., ::step]

    return draw(rows, depth), draw(columns, depth), draw(columns), draw(rows, columns)


def _close(dtype, got, want, scale):
    assert (
        np.abs(got.astype(np.float64) - want).max(initial=0) <= TOLERANCE[dtype] * scale
    )


# Numba notes that a strided source makes BLAS's path copy; the kernels' sources are rows
@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(0, 2 * sum(module._HEIGHTS[WIDTHS[0]]) + 3),
    depth=st.integers(0, 70),
    columns=st.integers(0, 75),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize(
    ("steps", "bits"), [*((2, bits) for bits in WIDTHS), (1, WIDTHS[0])],
    ids=[*(f"tiles-{bits}" for bits in WIDTHS), "one-step"],
)  # fmt: skip
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_products_match_numpy_for_any_sizes(
    dtype, strided, steps, bits, rows, depth, columns, seed
):
    """By register tiles of each width over packed panels; for one step, by BLAS on the
    matrix unpacked."""
    rng = np.random.default_rng(seed)
    source, matrix, bias, out = _arrays(rng, dtype, rows, depth, columns, strided)
    exact = source.astype(np.float64) @ matrix.T.astype(np.float64)
    scale = 1 + np.abs(source).sum(axis=1, initial=0).max(initial=0)
    with choices(tile_bits=bits):
        packed = module._pack(matrix, rows, steps)
    if steps == 1 and matrix.size:  # BLAS's, on the matrix as it is (not an empty one)
        np.testing.assert_array_equal(packed[1], matrix)
    module._product(source, packed, bias, out)
    _close(dtype, out, exact + bias, scale)
    module._product(source, packed, bias[:0], out)  # a bias of length 0 adds nothing
    _close(dtype, out, exact, scale)
    # out += adjoint @ M with M = matrix.T, whose transpose is packed: the rows accumulate
    before = out.astype(np.float64)
    module._product_add(source, packed, out)
    _close(dtype, out, before + exact, 2 * scale)


@pytest.mark.parametrize("few", [1, 5, 64])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_few_rows_and_many_times_a_transposed_matrix_match_numpy(dtype, few):
    """``rows @ matrix.T`` in the order BLAS runs faster on either side of ``few_rows`` (few
    as the transpose of ``matrix @ rows.T``): C-contiguous, the product's numbers."""
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((37, 19)).astype(dtype)
    for count in (0, 1, 2, few, few + 1):
        rows = rng.standard_normal((count + 4, 19)).astype(dtype)[2:-2]  # a row slice
        with choices(few_rows=few):
            got = module._times_transpose(rows, matrix)
        assert got.shape == (count, 37) and got.flags.c_contiguous
        scale = 1 + np.abs(rows).sum(axis=1, initial=0).max(initial=0)
        _close(dtype, got, rows.astype(np.float64) @ matrix.T.astype(np.float64), scale)
    assert module._turned(rows, matrix).flags.c_contiguous


# Numba notes that a strided matrix makes BLAS's path copy
@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
@settings(max_examples=20, deadline=None)
@given(
    rows=st.integers(0, 2 * module._BLOCK_ROWS + 30),
    depth=st.integers(0, 40),
    columns=st.integers(0, 75),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize("tile_rows", [1, 0], ids=["tiles", "blas"])
@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_products_of_every_step_at_once_match_numpy_for_any_sizes(
    dtype, bits, tile_rows, rows, depth, columns, seed
):
    """``rows @ matrix.T`` (an input projection), ``rows @ matrix`` (an input's gradient) and
    ``left.T @ right`` (a weight's: a sum over every row), into out and added to it, by tiles
    over the packed matrix in blocks of rows and of the sum (past two blocks, and a partial
    one) or by BLAS; of C-contiguous arrays, transposed views and row slices."""
    rng = np.random.default_rng(seed)
    source = rng.standard_normal((rows, depth)).astype(dtype)
    matrix = rng.standard_normal((columns, depth)).astype(dtype)
    exact = source.astype(np.float64) @ matrix.T.astype(np.float64)
    scale = 1 + np.abs(source).sum(axis=1, initial=0).max(initial=0)
    out = np.full((rows, columns), np.nan, dtype)
    by_rows = np.full((depth + 2, columns), np.nan, dtype)[1:-1]  # a row slice
    wide = rng.standard_normal((rows, columns)).astype(dtype)
    with choices(tile_bits=bits, tile_rows=tile_rows):
        got = module._times_transpose(source, matrix)
        module._times(source, matrix.T, out, 0)
        added = out.copy()
        module._times(source, matrix.T, added, 1)
        module._times_rows(source, wide, by_rows, 0)
        summed = by_rows.copy()
        module._times_rows(source, wide, summed, 1)
    assert got.shape == (rows, columns) and got.flags.c_contiguous
    _close(dtype, got, exact, scale)
    _close(dtype, out, exact, scale)
    _close(dtype, added, 2 * exact, 2 * scale)
    over_rows = source.T.astype(np.float64) @ wide
    sums = 1 + np.abs(source).sum(axis=0).max(initial=0) * np.abs(wide).max(initial=0)
    _close(dtype, by_rows, over_rows, sums)
    _close(dtype, summed, 2 * over_rows, 2 * sums)


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_packing_puts_each_panel_of_rows_transposed_and_zero_past_the_end(dtype, bits):
    matrix = np.arange(37 * 5, dtype=dtype).reshape(37, 5)
    with choices(tile_bits=bits):
        packed, dense = module._pack(matrix, 2, 3)
    width = packed.shape[2]
    assert width == 2 * bits // (8 * np.dtype(dtype).itemsize)  # two vectors
    assert packed.shape == (-(-37 // width), 5, width)
    for c in range(packed.shape[0] * width):
        column = packed[c // width, :, c % width]
        np.testing.assert_array_equal(column, matrix[c] if c < 37 else 0)
    # kept only for one row and a matrix too large for the cache, or for one step
    assert dense.size == 0
    np.testing.assert_array_equal(module._pack(matrix, 2, 1)[1], matrix)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_one_row_times_a_streamed_matrix_runs_through_blas_and_matches(dtype):
    rng = np.random.default_rng(5)
    depth = module._STREAMED // (np.dtype(dtype).itemsize * 100) + 1
    source, matrix, bias, out = _arrays(rng, dtype, 1, depth, 100, False)
    packed, dense = module._pack(matrix, 1, 3)
    np.testing.assert_array_equal(dense, matrix)
    assert packed.size == 0
    assert (
        module._pack(matrix, 2, 3)[1].size == 0
        and module._pack(matrix[:50], 1, 3)[1].size == 0
    )
    exact = source.astype(np.float64) @ matrix.T.astype(np.float64)
    scale = 1 + np.abs(source).sum()
    module._product(source, (packed, dense), bias, out)
    _close(dtype, out, exact + bias, scale)
    module._product(source, (packed, dense), bias[:0], out)
    _close(dtype, out, exact, scale)
    module._product_add(source, (packed, dense), out)
    _close(dtype, out, 2 * exact, 2 * scale)


@pytest.mark.parametrize("bits", WIDTHS)
def test_a_product_never_writes_past_its_rows_and_columns(bits):
    """Out is a window of a larger array: the cells around it keep their values."""
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        rows, depth, columns = sum(module._HEIGHTS[bits]) + 1, 9, 37
        whole = np.full((rows + 2, columns + 3), 7.0, dtype)
        out = whole[1:-1, 1:-2]
        source = rng.standard_normal((rows, depth)).astype(dtype)
        matrix = rng.standard_normal((columns, depth)).astype(dtype)
        with choices(tile_bits=bits):
            packed = module._pack(matrix, rows, 2)
        module._product(source, packed, np.zeros(columns, dtype), out)
        ring = whole.copy()
        ring[1:-1, 1:-2] = 7.0
        np.testing.assert_array_equal(ring, 7.0)
        _close(
            dtype, out, source.astype(np.float64) @ matrix.T, 1 + np.abs(source).sum()
        )


@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
def test_reversed_views_are_read_and_written_through_their_negative_strides():
    rng = np.random.default_rng(4)
    dtype = np.float64
    rows, depth, columns = 5, 6, 19
    source = rng.standard_normal((rows, depth))[:, ::-1]
    matrix = rng.standard_normal((columns, depth))
    bias = rng.standard_normal(columns)[::-1]
    out = np.zeros((rows, columns))[:, ::-1]
    module._product(source, module._pack(matrix, rows, 2), bias, out)
    _close(dtype, out, source @ matrix.T + bias, 1 + np.abs(source).sum())


def test_set_tuning_takes_only_what_the_products_can_run():
    before = module.tuning()
    assert before["tile_bits"] in module._NATIVE and before["few_rows"] >= 1
    for wrong, named in (({"tile_bits": 128}, "tile_bits: expected .*256, got 128"),
                         ({"tile_bits": 256.0}, "tile_bits"),
                         ({"few_rows": 0}, "few_rows: expected an int above 0, got 0"),
                         ({"few_rows": "8"}, "few_rows"),
                         ({"tile_rows": -1}, "tile_rows: expected an int from 0 on, got -1"),
                         ({"tile_rows": 1.5}, "tile_rows")):  # fmt: skip
        with pytest.raises(ValueError, match=named):
            module.set_tuning(**wrong)
    assert module.tuning() == before


def _choices_in_a_process(cache, **environment) -> dict:
    """The choices a fresh process takes, with Numba's cache in ``cache``."""
    code = (
        "import json; from generated import _runtime as r; "
        "print(json.dumps([r.tuning(), r._processor(), str(r._kept())]))"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT), **environment)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


def test_the_choices_are_timed_once_and_kept_beside_the_kernels(tmp_path):
    """A process with no choices kept for its processor times them and keeps them in Numba's
    cache of the runtime; the next takes them from there; a file it cannot read is timed
    again and replaced whole, other processors' choices kept."""
    chosen, key, kept = _choices_in_a_process(tmp_path)
    kept = Path(kept)
    assert kept.parent.is_relative_to(tmp_path) and kept.name.startswith("tuning-")
    assert chosen["tile_bits"] in module._NATIVE and chosen["few_rows"] in (1, 16, 64)
    assert chosen["tile_rows"] in (0, 128, 512)
    assert json.loads(kept.read_text()) == {key: chosen}
    # the next process reads them: set to others here, it reports those
    other = {"tile_bits": module._NATIVE[-1], "few_rows": 7, "tile_rows": 300}
    kept.write_text(json.dumps({key: other, "another processor": {"few_rows": 3}}))
    assert _choices_in_a_process(tmp_path)[0] == other
    # what the runtime cannot run is timed again; the other processor's stay
    kept.write_text(json.dumps({key: {"tile_bits": 128, "few_rows": 7, "tile_rows": 1},
                                "another processor": {"few_rows": 3}}))  # fmt: skip
    again = _choices_in_a_process(tmp_path)[0]
    assert again["tile_bits"] in module._NATIVE and again["few_rows"] in (1, 16, 64)
    assert json.loads(kept.read_text()) == {key: again, "another processor": {"few_rows": 3}}
    kept.write_text("{ not json")
    assert _choices_in_a_process(tmp_path)[0]["tile_bits"] in module._NATIVE
    assert key in json.loads(kept.read_text())
    assert sorted(p.name for p in kept.parent.glob("tuning-*")) == [kept.name]


def test_without_numba_s_cache_the_choices_are_timed_and_kept_nowhere(tmp_path):
    chosen, _, kept = _choices_in_a_process(tmp_path, GATESMITH_NUMBA_CACHE="0")
    assert kept == "None" and chosen["tile_bits"] in module._NATIVE
    assert not list(tmp_path.rglob("tuning-*"))


def test_the_choices_are_kept_apart_for_each_blas_kernel_the_environment_asks_for(
    monkeypatch,
):
    """Which products win by tiles depends on the BLAS's kernels, which the environment can
    pin (``OPENBLAS_CORETYPE``): each pin has choices of its own."""
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    pinned = module._processor()
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    other = module._processor()
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert len({pinned, other, module._processor()}) == 3
