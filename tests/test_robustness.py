"""Nothing a user writes or runs can inject code, destroy files, or yield a broken module.

One test (or a parametrized group) per hazard: free text in generated code, writes that would
lose data, names that would break a module, edge semantics of the runtime, and errors that
must be messages rather than tracebacks.
"""

from __future__ import annotations

import ast
import builtins
import math
import os
import re
import runpy
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import ROOT, load_generated

from derive import pipeline, registry
from derive.backends import reserved
from derive.cli import main
from derive.emit.templates import docstring_escape
from derive.emit.write import WriteError
from derive.runtime import SGD, Adam, Recurrent, clip_grad_norm
from derive.symbolic.activations import sigmoid, tanh
from derive.symbolic.declare import Cell, DeclarationError
from derive.verify import import_kernel
from generated import _runtime

#: Free text that would run, or break the module, if it reached Python unescaped.
HOSTILE = (
    '"""\nimport builtins; builtins.gatesmith_injected = True\n"""',
    "\\x \\N{BULLET} \\u12 \\",
    'quote " and \'\'\' and """',
    "control \x00 \x07 \x1b[31m \r\n line \u2028 separator, Gülçehre, 😀",
    "}{ %comment $math$ #hash &amp ~tilde ^caret _under \\input{/etc/passwd}",
)


def _cell(name="hostile", title="t", citation="c", conventions=(), **names):
    """A small gated cell with a second state of a declared size; ``names`` override its
    identifiers."""
    n = {
        "state": "h",
        "gate": "f",
        "weight": "weight_x",
        "vector": "p",
        "scalar": "s",
        "size": "proj_size",
    }
    n.update(names)
    cell = Cell(name, title=title, citation=citation, conventions=conventions)
    P = cell.size("P", n["size"])
    x = cell.input()
    h = cell.state(n["state"], output=True)
    m = cell.state("m", size=P)
    vm = cell.dense(cell.weight("weight_m", "m", cols="H", block_size=P), h.prev)
    cell.update(m, tanh(vm.m))
    W = cell.weight(n["weight"], "f g", cols="I")
    U = cell.weight("weight_h", "f g", cols="H")
    p = cell.vector(n["vector"])
    s = cell.scalar(n["scalar"])
    wx, wh = cell.dense(W, x), cell.dense(U, h.prev)
    f = cell.gate(n["gate"], sigmoid(wx.f + wh.f + p * h.prev))
    cell.update(h, (1 - f) * h.prev + f * tanh(s * wx.g + wh.g))
    return cell.build()


def _module(spec, folder):
    run = pipeline.Run()
    return import_kernel(
        folder, pipeline.kernel_files([spec], run, package=False), spec.name
    )


# -- 1. free text reaches Python only through escaping -------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_free_text_cannot_inject_code(tmp_path, text):
    spec = _cell(title=text, citation=text, conventions=(text, "plain"))
    module = _module(spec, tmp_path)
    assert not getattr(builtins, "gatesmith_injected", False)
    assert f"{text}. {text}." in module.__doc__ and f"- {text}\n" in module.__doc__


@pytest.mark.parametrize("text", HOSTILE)
def test_docstring_escape_reads_back(text):
    assert ast.literal_eval(f'"""{docstring_escape(text)}"""') == text


# -- 2. no data loss -------------------------------------------------------------------------


def _full_package(tmp_path):
    out = tmp_path / "kernels"
    run = pipeline.Run()
    pipeline.generate(out, pipeline.specs_for(["lstm", "gru", "rnn_tanh"], run), run)
    return out


def _index(out):
    return runpy.run_path(str(out / "__init__.py"))["VARIANTS"]


def test_subset_generation_keeps_the_package_index(tmp_path, capsys):
    out = _full_package(tmp_path)
    assert main(["generate", "gru", "--out", str(out)]) == 0
    assert _index(out) == ("rnn_tanh", "lstm", "gru")
    # and the checkout's own package: a subset run leaves it current
    assert main(["generate", "lstm"]) == 0
    assert main(["check"]) == 0


def test_concurrent_subset_runs_keep_every_variant(tmp_path):
    out = _full_package(tmp_path)
    (out / "gru.py").unlink()
    (out / "rnn_tanh.py").unlink()

    def generate(name):
        run = pipeline.Run()
        pipeline.generate(out, pipeline.specs_for([name], run), run, prune=False)

    threads = [
        threading.Thread(target=generate, args=(n,)) for n in ("gru", "rnn_tanh")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(_index(out)) == {"lstm", "gru", "rnn_tanh"}


@pytest.mark.parametrize(
    "name", ["__init__.py", "lstm.py", "_interface.py", "_runtime.py"]
)
def test_out_never_replaces_a_file_gatesmith_did_not_write(tmp_path, capsys, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("my own code\n")
    assert main(["generate", "lstm", "--out", str(out)]) == 2
    assert "was not written by gatesmith" in capsys.readouterr().err
    assert (out / name).read_text() == "my own code\n"
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_out_naming_the_derive_package_is_refused(capsys):
    before = {p: p.read_bytes() for p in (ROOT / "derive").glob("*.py")}
    assert main(["generate", "--out", str(ROOT / "derive")]) == 2
    assert "was not written by gatesmith" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (ROOT / "derive").glob("*.py")} == before


def test_a_killed_writer_leaves_no_temporaries_behind(tmp_path):
    out = _full_package(tmp_path)
    leftover = out / ".gatesmith-lstm.py.k1ll3d.tmp"
    leftover.write_text("half a module")
    assert main(["generate", "gru", "--out", str(out)]) == 0
    assert not leftover.exists()


# -- 3. names that would break a module are refused where they are declared -------------------


@pytest.mark.parametrize(
    "names, words",
    [
        (
            {"gate": "range"},
            "'range' is reserved for the generated code: it is a Python builtin",
        ),
        (
            {"gate": "lengths"},
            "'lengths' is reserved for the generated code: the generated modules use it",
        ),
        (
            {"state": "sys"},
            "'sys' is reserved for the generated code: the generated modules use it",
        ),
        (
            {"vector": "np"},
            "'np' is reserved for the generated code: the generated modules use it",
        ),
        (
            {"weight": "tuple"},
            "'tuple' is reserved for the generated code: it is a Python builtin",
        ),
        (
            {"size": "dtype"},
            "'dtype' is reserved for the generated code: the generated modules use it",
        ),
        (
            {"size": "seed"},
            "'seed' is reserved for the generated code: the generated modules use it",
        ),
        (
            {"size": "batch"},
            "'batch' is reserved for the generated code: the generated modules use it",
        ),
        ({"size": "hidden_size"}, "size argument 'hidden_size' is already taken"),
        ({"vector": "ｐ"}, "'ｐ' is read by Python as 'p'"),
        (
            {"scalar": "sum"},
            "'sum' is reserved for the generated code: it is a Python builtin",
        ),
        ({"name": "load"}, "taken by the generated package itself"),
        ({"name": "VARIANTS"}, "taken by the generated package itself"),
        ({"name": "importlib"}, "taken by the generated package itself"),
        ({"title": b"bytes"}, "the title must be a string"),
        ({"citation": "lone \ud800"}, "is not Unicode text"),
    ],
)
def test_names_that_would_break_the_module_are_refused(names, words):
    with pytest.raises(DeclarationError, match=r"test_robustness.py:\d+: ") as error:
        _cell(**names)
    assert words in str(error.value)


@pytest.mark.parametrize(
    "latex",
    [r"\input{/etc/passwd}", r"x}{", "a % comment", r"\def\x{1}", "$x$", "a\nb", "σ",
     r"\text{\^^69nput{secret.txt}}", "^^5cinput{x}", "a`b", "a|b", r"\href{x}{n}"],
)
def test_hostile_latex_names_are_refused(latex):
    cell = Cell("hostile_latex", title="t", citation="c")
    with pytest.raises(DeclarationError, match="latex="):
        cell.state("h", latex=latex)


def test_reserved_names_cover_what_the_generated_code_uses():
    """Every name a generated module's kernels and interface functions bind or read is
    reserved (or prefixed), except the cell's own: a declared name cannot shadow one."""
    for variant in ("lstm", "gru_cho", "lstm_proj", "lstm_peephole"):
        spec = registry.get(variant)
        own = {s.name for s in spec.quantities} | set(spec.param_names)
        own |= {s.argument for s in spec.sizes} | {f"{s}_new" for s in spec.state_names}
        tree = ast.parse((ROOT / "generated" / f"{variant}.py").read_text())
        functions = [node for node in tree.body
                     if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]  # fmt: skip
        used = set()
        for function in functions:  # the kernels and the interface's functions
            for node in ast.walk(function):
                if isinstance(node, ast.Name):
                    used.add(node.id)
                elif isinstance(node, ast.arg):
                    used.add(node.arg)
        unreserved = {
            n
            for n in used - own
            if n not in reserved()[0] and not n.startswith(reserved()[1])
        }
        # names the kernels compute from the cell's own (its temporaries, its adjoints)
        unreserved -= {n for n in unreserved if any(n.endswith(o) for o in own)}
        assert not unreserved, (variant, sorted(unreserved))


def test_new_refuses_a_builtin_variant_name(tmp_path):
    with pytest.raises(SystemExit, match="'lstm' is a built-in variant"):
        main(["new", "lstm", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


# -- 4. edge semantics -----------------------------------------------------------------------


def _grads_with_nan(order):
    grads = {
        "a": np.array([1.0, 2.0]),
        "b": np.array([np.nan, 0.5]),
        "c": np.array([3.0]),
    }
    return {k: grads[k].copy() for k in order}


@pytest.mark.parametrize("order", [("a", "b", "c"), ("c", "b", "a"), ("b", "a", "c")])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_with_nan_is_nan_like_torch(order, norm_type):
    torch = pytest.importorskip("torch")
    grads = _grads_with_nan(order)
    params = []
    for g in _grads_with_nan(order).values():
        params.append(torch.zeros(g.shape, dtype=torch.float64, requires_grad=True))
        params[-1].grad = torch.tensor(g)
    want = float(torch.nn.utils.clip_grad_norm_(params, 1.0, norm_type))
    got = clip_grad_norm(grads, 1.0, norm_type)
    assert math.isnan(got) and math.isnan(want)
    for g, p in zip(grads.values(), params, strict=True):  # NaN everywhere, as in torch
        np.testing.assert_array_equal(g, p.grad.numpy())


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: SGD(p, 0.1, momentum=-0.9), "momentum must be a number >= 0"),
        (
            lambda p: SGD(p, 0.1, weight_decay=-1e-4),
            "weight_decay must be a number >= 0",
        ),
        (lambda p: SGD(p, math.nan), "lr must be a finite number > 0"),
        (lambda p: Adam(p, eps=-1e-8), "eps must be a number >= 0"),
        (lambda p: Adam(p, eps=math.nan), "eps must be a number >= 0"),
        (lambda p: Adam(p, weight_decay=-1.0), "weight_decay must be a number >= 0"),
        (lambda p: Adam(p, betas=(0.9,)), "betas must be two numbers in [0, 1)"),
        (
            lambda p: Adam(p, betas=(0.9, 0.99, 0.5)),
            "betas must be two numbers in [0, 1)",
        ),
    ],
)
def test_optimisers_refuse_bad_hyperparameters(make, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        make({"w": np.zeros((2, 3))})


@pytest.mark.parametrize("optimiser", [lambda p: SGD(p, 0.1), lambda p: Adam(p)])
def test_optimisers_refuse_gradients_that_merely_broadcast(optimiser):
    params = {"w": np.zeros((2, 3))}
    step = optimiser(params)
    for bad in (
        np.ones(3),
        np.ones((1, 3)),
        np.ones((2, 3), np.int64),
        [[1.0] * 3] * 2,
    ):
        with pytest.raises(ValueError, match=r"grads\['w'\] must be a float array"):
            step.step({"w": bad})
    assert not params["w"].any()


def test_saved_bytes_per_step_refuses_a_bad_batch():
    cell = load_generated("lstm")
    for batch in (-5, 0, 2.5, True):
        with pytest.raises(ValueError, match="batch must be a positive integer"):
            cell.saved_bytes_per_step(batch, 3, 4)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        cell.saved_bytes_per_step(2, 3, 4, dtype=np.int32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_saturated_sigmoid_reaches_zero_like_torch(dtype):
    torch = pytest.importorskip("torch")
    cell = load_generated("lstm")
    one = dtype(1)
    for a in (-1000.0, -800.0, 800.0, 1000.0):  # saturated in both dtypes
        want = torch.sigmoid(
            torch.tensor(a, dtype=getattr(torch, np.dtype(dtype).name))
        )
        assert _runtime._sigmoid(dtype(a), one) == float(want), a
    # a gate saturated shut passes nothing on: c_t = f c_{t-1} + i g keeps no trace of c_0
    # (a floor of 1e-308 or 6e-39 times the largest c_0 would leave about 1)
    params = cell.init_params(2, 3, dtype=dtype)
    params["bias_ih"][3:6] = -1000  # the forget gate's block
    c0 = np.full((1, 3), 0.9 * np.finfo(dtype).max, dtype)
    _, (_, c1), _ = cell.forward(
        np.zeros((1, 1, 2), dtype), (np.zeros_like(c0), c0), params
    )
    assert np.abs(c1).max() < 1


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_recurrent_output_is_always_writeable(batch, batch_first):
    net = Recurrent("gru", 2, 3, batch_first=batch_first, dtype=np.float64)
    x = np.zeros((batch, 4, 2) if batch_first else (4, batch, 2))
    out, _, tape = net.forward(x)
    assert out.flags.writeable
    before = net.backward(np.ones_like(out), None, tape)[0].copy()
    out[...] = 123.0  # the caller's own array: the tape is untouched
    _, _, tape = net.forward(x)
    np.testing.assert_array_equal(
        net.backward(np.ones_like(out), None, tape)[0], before
    )


# -- 5. messages, not tracebacks -------------------------------------------------------------


def test_out_naming_a_file_or_a_folder_under_a_file_is_a_message(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["generate", "lstm", "--out", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["generate", "lstm", "--out", str(afile / "sub")]) == 2
    assert "cannot create the folder" in capsys.readouterr().err
    with pytest.raises(WriteError):
        pipeline.write_docs(
            afile, {"x.tex": "% Generated by gatesmith\n"}, pipeline.Run(), False
        )


def test_a_read_only_install_names_the_cache_settings(tmp_path):
    # Numba's user-provided locator with no folder set finds none: what a read-only install
    # with no writable cache folder meets
    env = {**os.environ, "NUMBA_CACHE_DIR": "", "PYTHONPATH": str(ROOT),
           "NUMBA_CACHE_LOCATOR_CLASSES": "numba.core.caching.UserProvidedCacheLocator"}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", "import generated.lstm"], env=env,
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "ImportError: generated: Numba cannot write its cache" in result.stderr
    assert (
        "NUMBA_CACHE_DIR" in result.stderr
        and "GATESMITH_NUMBA_CACHE=0" in result.stderr
    )
    env["GATESMITH_NUMBA_CACHE"] = "0"
    result = subprocess.run([sys.executable, "-c", "import generated.lstm"], env=env,
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_tape_from_a_shallower_network_is_a_message():
    shallow = Recurrent("lstm", 2, 3, num_layers=1, dtype=np.float64)
    deep = Recurrent("lstm", 2, 3, num_layers=2, dtype=np.float64)
    x = np.zeros((4, 2, 2))
    out, _, tape = shallow.forward(x)
    with pytest.raises(ValueError, match="tape comes from a net of 1 layer"):
        deep.backward(out, None, tape)


def test_list_into_a_closed_pipe_is_quiet():
    command = f"{sys.executable} -m derive list | head -n 1"
    result = subprocess.run(
        command, shell=True, capture_output=True, text=True, cwd=ROOT
    )
    assert result.stdout.startswith("rnn_tanh") and result.stderr == ""


def test_check_names_the_command_that_fixes_each_file(tmp_path, capsys, monkeypatch):
    docs = tmp_path / "docs"
    run = pipeline.Run()
    pipeline.write_docs(
        docs, pipeline.doc_files(pipeline.specs_for(None, run), run), run, True
    )
    (docs / "gru.tex").write_text((docs / "gru.tex").read_text() + "% edited\n")
    monkeypatch.setattr(pipeline, "default_docs", lambda: docs)
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert "run `gatesmith docs`" in err and "generate" not in err


@pytest.mark.usefixtures("user_registry")
def test_check_out_never_advises_pruning_a_users_kernel(tmp_path, capsys):
    out = tmp_path / "kernels"
    assert main(["new", "mycell", "--out", str(tmp_path)]) == 0
    spec = str(tmp_path / "mycell.py")
    assert main(["generate", "--spec", spec, "--out", str(out)]) == 0
    assert main(["generate", "lstm", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", "--spec", spec, "--out", str(out)]) == 0
    (out / "mycell.py").write_text((out / "mycell.py").read_text() + "# edited\n")
    assert main(["check", "--spec", spec, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"`gatesmith generate --spec {spec} --out {out}`" in err
    assert "no declaration" not in err and (out / "lstm.py").exists()


def test_only_the_checkouts_own_package_is_pruned(tmp_path, capsys, monkeypatch):
    out = _full_package(tmp_path)
    stray = out / "old_cell.py"
    stray.write_text("# Generated by gatesmith 0.0 from a declaration since deleted\n")
    assert main(["generate", "lstm", "gru", "rnn_tanh", "--out", str(out)]) == 0
    assert main(["generate", "--out", str(out)]) == 0
    assert stray.exists() and "old_cell" in _index(out)
    monkeypatch.setattr(pipeline, "default_out", lambda: out)
    monkeypatch.setattr(registry, "names", lambda: ("rnn_tanh", "lstm", "gru"))
    capsys.readouterr()
    assert main(["generate"]) == 0
    assert f"removed {stray} (no declaration left)" in capsys.readouterr().out
    assert not stray.exists() and _index(out) == ("rnn_tanh", "lstm", "gru")
