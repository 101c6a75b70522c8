"""A cell declared, built, displayed, verified and trained in one process (``derive.build``):
the build cache, a changed declaration, errors at a notebook cell's line, the display, and the
example notebook executed."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT

import derive
from derive import cache, registry
from derive.symbolic.declare import CellSpec, DeclarationError
from derive.verify import Report, Verification

#: A declaring function's source, with the candidate's recurrent term to fill in: ``{recurrent}``
#: is ``f * wh.n`` (the gate resets the projection) or ``wh.n`` (it does not).
DECLARATION = """
from derive import Cell, sigmoid, tanh


def notebook_cell():
    cell = Cell("notebook_cell", title="{title}", citation="{citation}")
    x = cell.input()
    h = cell.state("h")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("f n")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh)
    f = cell.gate("f", sigmoid(wx.f + wh.f))
    n = cell.let("n", tanh(wx.n + {recurrent}), latex=r"\\tilde{{h}}")
    cell.update(h, (1 - f) * h.prev + f * n)
    return cell.build()
"""


def declaring(recurrent="f * wh.n", title="A cell of a notebook", citation="none"):
    """The declaring function of :data:`DECLARATION`, defined as a notebook cell defines it."""
    namespace = {"__name__": "__main__"}
    source = DECLARATION.format(recurrent=recurrent, title=title, citation=citation)
    exec(compile(source, "<notebook cell>", "exec"), namespace)
    return namespace["notebook_cell"]


@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory):
    """One build cache for the module's tests (so that they share compiled kernels), and the
    environment pointing at it."""
    folder = tmp_path_factory.mktemp("cells")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cache.CACHE_ENVIRONMENT, str(folder))
        yield folder


@pytest.fixture(scope="module")
def built(cache_folder):
    return cache.build(declaring())


def test_build_writes_a_package_into_the_cache_and_imports_it(built, cache_folder):
    spec = cache.built_spec(built)
    assert isinstance(spec, CellSpec) and spec.name == "notebook_cell"
    package, variant = built.__name__.split(".")
    assert package.startswith(cache.PACKAGE_PREFIX) and variant == "notebook_cell"
    folder = cache_folder / package.removeprefix(cache.PACKAGE_PREFIX)
    assert built.__file__ == str(folder / "notebook_cell.py")
    assert {p.name for p in folder.glob("*.py")} == {
        "__init__.py", "_interface.py", "_runtime.py", "notebook_cell.py"
    }  # fmt: skip
    assert built.PARAMS == ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    # the same declaration again, from the same function or another with equal equations
    assert cache.build(declaring()) is built
    assert cache.build(spec) is built
    assert derive.build is cache.build


def test_a_declaration_in_the_cache_is_not_derived_again(built, monkeypatch):
    """A new process (modelled by forgetting the imported package) finds the module in the
    cache: nothing is derived or written, and the module is the cached file."""
    package = built.__name__.split(".")[0]
    for name in [n for n in sys.modules if n.split(".")[0] == package]:
        monkeypatch.delitem(sys.modules, name)

    def refuse(*args, **kwargs):
        raise AssertionError("a cached declaration was derived again")

    monkeypatch.setattr("derive.pipeline.kernel_files", refuse)
    again = cache.build(declaring())
    assert again is not built and again.__file__ == built.__file__
    assert cache.load(built.__name__) is again


def test_a_changed_declaration_gets_a_module_of_its_own(built):
    changed = cache.build(declaring(recurrent="wh.n"))
    assert changed.__name__ != built.__name__
    assert (
        sys.modules[built.__name__] is built
    )  # the first stays for what still runs it
    assert cache.built_spec(changed) != cache.built_spec(built)


def test_load_names_only_built_modules(cache_folder):
    assert cache.load("generated.lstm") is None
    assert cache.load(f"{cache.PACKAGE_PREFIX}0123456789abcdef0123.nothing") is None
    assert cache.load(f"{cache.PACKAGE_PREFIX}x.not an identifier") is None


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENVIRONMENT, str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(cache.CACHE_ENVIRONMENT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "gatesmith" / "cells"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (42, "declaration must be a declaring function .* got int"),
        (np, "got the module numpy, which is built already"),
    ],
)
def test_build_refuses_what_is_not_a_declaration(argument, message):
    with pytest.raises(TypeError, match=message):
        cache.build(argument)


def test_a_build_that_fails_writes_nothing(tmp_path, monkeypatch):
    def broken():
        from derive import Cell

        cell = Cell("broken", title="t", citation="c")
        cell.input()
        cell.state("h")
        return cell.build()  # h is never updated

    with pytest.raises(DeclarationError, match="test_notebook.py:"):
        cache.build(broken, cache=tmp_path)

    def not_a_cell():
        return 3

    with pytest.raises(registry.SpecFileError, match="returned int, not a cell"):
        cache.build(not_a_cell, cache=tmp_path)
    assert list(tmp_path.iterdir()) == []
    # killed half way through writing: the package appears whole or not at all
    from derive.emit import write

    original = write.write_tree

    def interrupted(files, out, *args):
        original(dict(list(files.items())[:1]), out)
        raise KeyboardInterrupt

    monkeypatch.setattr(write, "write_tree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.build(declaring(citation="interrupted"), cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_notebook_cells_line(tmp_path, monkeypatch):
    """In IPython, a declaration's error names the cell as IPython's tracebacks do."""
    shell_module = pytest.importorskip("IPython.core.interactiveshell")
    shell = shell_module.InteractiveShell.instance()
    monkeypatch.setattr(shell, "showtraceback", lambda *a, **k: None)
    monkeypatch.setenv(cache.CACHE_ENVIRONMENT, str(tmp_path))
    bad_activation = textwrap.dedent(
        """\
        import derive
        from derive import Cell

        def notebook_bad():
            cell = Cell("notebook_bad")
            x = cell.input()
            h = cell.state("h")
            cell.update(h, h.prev + "text")
            return cell.build()

        derive.build(notebook_bad)
        """
    )
    result = shell.run_cell(bad_activation, store_history=True)
    error = result.error_in_exec
    assert error is not None
    assert f"Cell In[{result.execution_count}], line " in str(error), error
    outside_the_builder = textwrap.dedent(
        """\
        import derive

        def notebook_typo():
            return undefined_name

        derive.build(notebook_typo)
        """
    )
    result = shell.run_cell(outside_the_builder, store_history=True)
    assert isinstance(result.error_in_exec, registry.SpecFileError)
    assert (
        f"Cell In[{result.execution_count}], line 4: declaring 'notebook_typo'"
        in str(result.error_in_exec)
    )
    assert list(tmp_path.iterdir()) == []


def test_a_declaration_registered_again_from_its_own_module_replaces_itself(
    user_registry,
):
    first = registry.register(declaring())
    second = registry.register(declaring(recurrent="wh.n"))
    assert registry._DECLARATIONS["notebook_cell"] is second is not first
    assert registry.get("notebook_cell") == second()


def test_the_display_shows_equations_backward_step_and_diagram(built):
    pytest.importorskip("latex2mathml")
    html = built._repr_html_()
    assert html.count("<math") > 20
    for part in ("Forward step", "Backward step", "Parameter gradients"):
        assert part in html
    assert "<svg" in html or "needs Graphviz" in html
    if os.environ.get("GATESMITH_REQUIRE_DOT"):
        assert "<svg" in html
    latex = built._repr_latex_()
    assert latex.count(r"\begin{aligned}") >= 4
    assert r"\sigma\left(" in latex and r"\delta h_{t-1}" in latex
    assert built._repr_html_() is html  # computed once


def test_the_display_escapes_what_a_declaration_says(cache_folder):
    pytest.importorskip("latex2mathml")
    module = cache.build(
        declaring(title="<script>alert(1)</script> & co", citation="<b>bold</b>")
    )
    html = module._repr_html_()
    assert (
        "<script>" not in html
        and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    )
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_verify_a_declaration_returns_a_table(built):
    pytest.importorskip("torch")
    table = derive.verify(declaring())
    assert isinstance(table, Verification) and table.ok and bool(table)
    assert [r.dtype for r in table] == ["float64", "float32"]
    assert all(r.variant == "notebook_cell" for r in table)
    text = str(table).splitlines()
    assert text[0].split()[:2] == ["variant", "dtype"] and len(text) == 3
    assert all(line.rstrip().endswith(" ok") for line in text[1:])
    assert "<table>" in table._repr_html_() and table._repr_html_().count("<tr>") == 3
    assert derive.verify(built).reports == table.reports


def test_a_verification_over_tolerance_says_failed():
    table = Verification(
        (Report("cell", "float64", {"dx": 1e-3, "ys": 1e-16}, 1e-9),
         Report("cell", "float32", {"dx": 1e-7}, 1e-4))
    )  # fmt: skip
    assert not table.ok and not bool(table)
    first, second = str(table).splitlines()[1:]
    assert first.split()[-2:] == ["dx", "FAILED"] and "1.00e-03" in first
    assert second.endswith(" ok")
    assert "<td>FAILED</td>" in table._repr_html_()


def test_verify_of_a_module_not_built_here_says_what_to_pass():
    import generated.lstm as lstm

    with pytest.raises(ValueError, match="was not built in this process"):
        derive.verify(lstm)


def test_the_runtimes_take_the_declaration(built):
    """The NumPy runtime and derive.jax build the declaration they are given (from the cache)
    and agree with the built module."""
    from derive.runtime import Recurrent

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 3))
    net = Recurrent(declaring(), 3, 4, dtype=np.float64, seed=0)
    assert net.cell is built
    ys = net.forward(x)[0]
    params = net.layer_params(0)
    want, _, _ = built.forward(x, None, params)
    np.testing.assert_allclose(ys, want, rtol=1e-14, atol=1e-15)
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from derive.jax import recurrent

    got, _ = recurrent(declaring(), params, x)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14, atol=1e-15)


def test_a_torch_module_of_a_built_cell_pickles_and_finds_its_module_again(built):
    torch = pytest.importorskip("torch")
    import pickle

    from derive import torch as binding

    net = binding.Recurrent(declaring(), 3, 4, dtype=torch.float64)
    assert net.cell_module == built.__name__
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    want, _ = net(x)
    name, package = built.__name__, built.__name__.split(".")[0]
    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] == package}
    try:  # as a new process finds it: from the cache, by the name the net keeps
        for n in saved:
            del sys.modules[n]
        binding._MODULES.pop(name, None)
        again = pickle.loads(pickle.dumps(net))
        got, _ = again(x)
        assert sys.modules[name] is not built
        torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-15)
    finally:
        sys.modules.update(saved)
        binding._MODULES[name] = built


#: Declare, build, train three steps; change an equation, build, train again: one process.
SESSION = """
import json, sys
import numpy as np
import torch
import derive
from derive.torch import Recurrent
from derive.verify.twin import twin_forward

DECLARATION = {declaration!r}
{helper}
torch.manual_seed(0)
x = torch.randn(6, 3, 4, dtype=torch.float64)
h0 = torch.randn(1, 3, 5, dtype=torch.float64)
report = {{}}
for version, recurrent in (("first", "f * wh.n"), ("changed", "wh.n")):
    net = Recurrent(declaring(recurrent), 4, 5, dtype=torch.float64)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        y, h = net(x, h0)
        loss = (y ** 2).sum() + (h ** 3).sum()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    # the trained net's output and gradients against autograd through each declaration
    net.zero_grad()
    y, h = net(x, h0)
    ((y ** 2).sum() + (h ** 3).sum()).backward()
    params = {{k.removesuffix("_l0"): p.detach().clone().requires_grad_()
              for k, p in net.named_parameters()}}
    errors = {{}}
    for other, other_recurrent in (("first", "f * wh.n"), ("changed", "wh.n")):
        spec = declaring(other_recurrent)()
        ty, (th,) = twin_forward(spec, x, (h0[0],), params)
        errors[other] = float((y - ty).abs().max())
        if other == version:
            ((ty ** 2).sum() + (th ** 3).sum()).backward()
            errors["gradients"] = max(
                float((net.get_parameter(k + "_l0").grad - p.grad).abs().max()
                      / p.grad.abs().max())
                for k, p in params.items()
            )
    report[version] = {{"module": net.cell_module, "losses": losses, "errors": errors}}
report["verify"] = derive.verify(declaring("wh.n")).ok
print(json.dumps(report))
"""


def test_declare_build_train_change_build_train_in_one_process(tmp_path):
    """The issue's session, in a fresh process whose home, working folder and temporary
    folder are empty: both runs use their own equations, the second's gradients match
    autograd, and nothing is written outside the cache folder."""
    pytest.importorskip("torch")
    home, work, temporary, cells = (
        tmp_path / n for n in ("home", "work", "tmp", "cells")
    )
    for folder in (home, work, temporary):
        folder.mkdir()
    generated_before = {
        p: p.stat().st_mtime_ns for p in (ROOT / "generated").glob("*.py")
    }
    environment = {
        **os.environ, "HOME": str(home), "TMPDIR": str(temporary), "XDG_CACHE_HOME": str(home),
        cache.CACHE_ENVIRONMENT: str(cells), "PYTHONDONTWRITEBYTECODE": "1",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SESSION.format(
            declaration=DECLARATION, helper=inspect.getsource(declaring))],
        cwd=work, env=environment, capture_output=True, text=True, check=False,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    first, changed = report["first"], report["changed"]
    assert first["module"] != changed["module"]
    for version, other in (("first", "changed"), ("changed", "first")):
        errors = report[version]["errors"]
        assert errors[version] < 1e-12, errors  # its own equations
        assert errors[other] > 1e-3, errors  # not the other's
        assert errors["gradients"] < 1e-10, errors
        assert len(report[version]["losses"]) == 3
    assert report["verify"] is True
    # torch.optim's import of torch._dynamo makes torch's own (empty) inductor folder in the
    # temporary folder, as it does for nn.LSTM alone
    written = [p for folder in (home, work, temporary) for p in folder.rglob("*")
               if not p.name.startswith("torchinductor_")]  # fmt: skip
    assert written == [], written
    assert {p.name for p in cells.iterdir()} == {
        m.split(".")[0].removeprefix(cache.PACKAGE_PREFIX)
        for m in (first["module"], changed["module"])
    }
    assert {
        p: p.stat().st_mtime_ns for p in (ROOT / "generated").glob("*.py")
    } == generated_before


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    """examples/cell_notebook.ipynb, executed: it displays the derivation, verifies, trains
    beside nn.LSTM with falling losses, plots them, and rebuilds a changed declaration."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("latex2mathml")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv(cache.CACHE_ENVIRONMENT, str(tmp_path / "cells"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    path = ROOT / "examples" / "cell_notebook.ipynb"
    notebook = nbformat.read(path, as_version=4)
    assert all(
        not cell.get("outputs") and cell.get("execution_count") is None
        for cell in notebook.cells if cell.cell_type == "code"
    ), "the committed notebook keeps its outputs; strip them"  # fmt: skip
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()  # fmt: skip
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", ())]
    assert not [o for o in outputs if o.output_type == "error"]
    data = [o.get("data", {}) for o in outputs]
    derivations = [
        d["text/html"] for d in data if "gatesmith-cell" in d.get("text/html", "")
    ]
    assert len(derivations) == 2 and all(h.count("<math") > 20 for h in derivations)
    tables = [
        d["text/html"] for d in data if d.get("text/html", "").startswith("<table>")
    ]
    assert len(tables) == 1 and tables[0].count("<td>ok</td>") == 2
    assert sum("image/png" in d for d in data) == 1
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    losses = json.loads(text.split("losses: ", 1)[1].splitlines()[0])
    assert set(losses) == {"gated_reset (gatesmith)", "nn.LSTM"}
    for values in losses.values():
        assert len(values) == 60 and np.mean(values[-10:]) < np.mean(values[:10]) - 0.5
    first = text.split("first: ", 1)[1].split()[0]
    again = text.split("again: ", 1)[1].split()[0]
    assert first != again and first.endswith(".gated_reset")
