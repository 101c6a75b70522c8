"""Hostile input, second round: the documents run no script, gradients are never silently
wrong, threads never race, caches stay bounded, hyperparameters are checked as the kernel
holds them, derivation cost stays polynomial, spec files cannot end a command quietly, and
tolerances follow the rounding a computation accumulates."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import sympy
from conftest import assert_verifies, build_kernel, chromium, load_generated
from hypothesis import given, settings
from hypothesis import strategies as st

from derive import pipeline
from derive.cli import main
from derive.emit.latex import document
from derive.emit.templates import (
    MATHML_ATTRIBUTES,
    MATHML_ELEMENTS,
    markdown_math,
    mathml,
    render_derivation,
)
from derive.lower import lower
from derive.symbolic import declare
from derive.symbolic.activations import sigmoid, tanh
from derive.symbolic.adjoint import derive_adjoint
from derive.symbolic.declare import (
    LATEX_COMMANDS,
    MAX_OPERATIONS,
    Cell,
    DeclarationError,
    latex_problem,
)
from derive.symbolic.flow import jacobians

# -- names a declaration gives reach the documents only through allow-lists ----------------

#: What attackers put in names: markup, links, styles, TeX's file access spelled through ^^,
#: Markdown's code-span and table breakers.
ATTACKS = (
    r"\text{<script>document.title='pwned'</script>}",
    r"\text{</math><script>document.title='pwned'</script>}",
    r"""\text{<img/src="x"/onerror=document.title='pwned'>}""",
    r"\style{background-image:url(http://127.0.0.1:1/x)}{x}",
    r"\href{javascript:document.title='pwned'}{n}",
    r"\text{\^^69nput{secret.txt}}",
    r"^^5cinput{secret.txt}",
    "x` <img src=x onerror=alert(1)> `",
    "a | b",
    r"\catcode`\^=7",
    r"\csname input\endcsname{x}",
)

_PIECES = st.sampled_from([
    *ATTACKS, "<", ">", "&", '"', "`", "|", "^^", "^", "_", "{", "}", "\\", "%", "$", "#", "~",
    "\n", "javascript:", "onerror=", "<script>", "\\input", "\\href", "\\style", "\\text",
    "\\mathrm{", "\\tilde{", "\\alpha", "\\cdot", "x", "W", "1", " ", "σ", "\x00",
])  # fmt: skip
hostile_names = st.lists(_PIECES, min_size=1, max_size=6).map("".join)


def _safe_mathml(markup: str) -> None:
    """``markup`` is MathML of allowed elements and attributes only, and nothing else."""
    root = ET.fromstring(
        markup
    )  # well-formed: text cannot close an element or open one
    for node in root.iter():
        tag = node.tag.removeprefix("{http://www.w3.org/1998/Math/MathML}")
        assert tag in MATHML_ELEMENTS, tag
        assert set(node.attrib) <= MATHML_ATTRIBUTES, node.attrib
        for value in node.attrib.values():
            assert re.fullmatch(r"[A-Za-z0-9 .%+-]*", value), value
    assert "<script" not in markup.lower()


@settings(max_examples=300, deadline=None)
@given(hostile_names)
def test_hostile_names_are_refused_or_harmless_in_every_format(name):
    """A name is refused at its line, or it is safe in TeX, Markdown and HTML alike."""
    problem = latex_problem(name)
    if name.strip() and problem is None:
        # TeX: every command is an allowed one, and no character is spelled by its code
        for command in re.findall(r"\\([A-Za-z]+)", name):
            assert command in LATEX_COMMANDS
        assert "^^" not in name
        # Markdown: the name stays inside its code span and its table cell
        assert markdown_math(name) == f"$`{name}`$"
        # HTML: the MathML holds presentation markup alone (or, where the converter cannot
        # read the name's syntax, nothing is written)
        _safe_mathml_or_nothing(name)
    else:
        with pytest.raises(DeclarationError, match="latex="):
            Cell("named", title="t", citation="c").state("h", latex=name)


@pytest.mark.parametrize("latex", ATTACKS)
def test_each_attack_is_refused_at_its_line(latex):
    with pytest.raises(DeclarationError, match=r"test_hostile.py:\d+: latex="):
        Cell("named", title="t", citation="c").state("h", latex=latex)


@settings(max_examples=200, deadline=None)
@given(hostile_names)
def test_mathml_is_printed_through_its_allow_list_whatever_it_is_given(latex):
    """Behind the names' allow-list, the MathML printer has its own: given raw LaTeX that
    the declaration check would refuse, it still writes nothing but presentation MathML."""
    _safe_mathml_or_nothing(latex)


def _safe_mathml_or_nothing(latex: str) -> None:
    try:
        markup = mathml(latex)
    except (
        Exception
    ) as error:  # the converter cannot read every string; then it writes none
        assert not isinstance(error, AssertionError)
        return
    _safe_mathml(markup)


@settings(max_examples=200, deadline=None)
@given(hostile_names)
def test_markdown_math_refuses_what_would_leave_its_code_span(latex):
    breakers = set(latex) & set("`|\n") or any(
        not (ch.isascii() and ch.isprintable()) for ch in latex
    )
    if breakers:
        with pytest.raises(ValueError, match="Markdown"):
            markdown_math(latex)
    else:
        import markdown

        html = markdown.markdown("| a |\n|---|\n| " + markdown_math(latex) + " |",
                                 extensions=["tables"])  # fmt: skip
        assert "<img" not in html and "<script" not in html
        assert html.count("<td>") == 1


def _bypassed_spec(monkeypatch, names: dict[str, str]):
    """A cell whose LaTeX names skip the declaration's check, as a bug in it would let
    them: what stands behind it (the MathML allow-list, the page's policy) must hold."""
    monkeypatch.setattr(declare, "_check_latex", lambda latex, where: latex)
    cell = Cell("bypassed", title="t", citation="c")
    x = cell.input()
    h = cell.state("h", latex=names["state"])
    W = cell.weight("w", "a b", cols="I", latex=names["weight"])
    wx = cell.dense(W, x)
    g = cell.gate("g", sigmoid(wx.a), latex=names["gate"])
    n = cell.let("n", tanh(wx.b + h.prev), latex=names["let"])
    cell.update(h, g * n + (1 - g) * h.prev)
    return cell.build()


class _Bait(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (the handler's protocol)
        _Bait.requests.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_hostile_pages_run_no_script_and_fetch_nothing(monkeypatch, tmp_path):
    """Headless Chromium opens pages whose names carry script, event handlers, a style that
    fetches from a local server that is listening, and a javascript: link: the title stays,
    no request arrives, no script or link survives."""
    pytest.importorskip("latex2mathml")
    browser = chromium()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bait)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Bait.requests = []
    try:
        spec = _bypassed_spec(monkeypatch, {
            "state": r"\text{<script>document.title='pwned'</script>}",
            "weight": rf"\style{{background-image:url(http://127.0.0.1:{port}/style)}}{{W}}",
            "gate": rf"""\text{{<img/src="http://127.0.0.1:{port}/img"/onerror=x>}}""",
            "let": r"\href{javascript:document.title='pwned'}{n}",
        })  # fmt: skip
        plan = lower(derive_adjoint(spec))
        page = tmp_path / "bypassed.html"
        page.write_text(render_derivation(document(plan), "html"), encoding="utf-8")
        text = page.read_text()
        assert "Content-Security-Policy" in text
        assert (
            "<script" not in text
            and "javascript:" not in text
            and "<img/src" not in text
        )
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                 "--virtual-time-budget=3000"]  # fmt: skip
        dom = subprocess.run(
            [browser, *flags, "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "pwned" not in re.search(
            r"<title>(.*?)</title>", dom.stdout, re.S
        ).group(1)
        assert "<script" not in dom.stdout and "javascript:" not in dom.stdout
        assert "<math" in dom.stdout
    finally:
        server.shutdown()
        server.server_close()
    assert _Bait.requests == []


def test_the_page_policy_stops_what_the_markup_would_run(tmp_path):
    """The policy alone, on a page that does carry script, an image from the network and an
    inline handler: Chromium runs none of it (what stands if a page's markup were wrong)."""
    browser = chromium()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bait)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Bait.requests = []
    from derive.emit.templates import environment

    head = environment().get_template("page.html.j2").module.head("quiet")
    page = tmp_path / "page.html"
    page.write_text(
        f"{head}<body><script>document.title='pwned'</script>"
        f"<img src='http://127.0.0.1:{port}/img' onerror=\"document.title='pwned'\">"
        "</body></html>",
        encoding="utf-8",
    )
    try:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>quiet</title>" in dom.stdout
    assert _Bait.requests == []


# -- second derivatives where they are not taken: refused, never passed off as zero --------


def _torch_lstm():
    torch = pytest.importorskip("torch")
    from derive.torch import Recurrent

    torch.manual_seed(0)
    rnn = Recurrent("lstm", 3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    return torch, rnn, x


def test_the_compiled_path_refuses_second_derivatives_too():
    torch, rnn, x = _torch_lstm()
    compiled = torch.compile(lambda v: rnn(v)[0].pow(2).sum(), backend="eager")
    (grad,) = torch.autograd.grad(compiled(x), rnn.weight_hh_l0, create_graph=True)
    with pytest.raises(RuntimeError, match="not differentiated again"):
        grad.sum().backward()


def test_jax_refuses_second_derivatives():
    jax = pytest.importorskip("jax")
    from derive.jax import recurrent

    cell = load_generated("mgu")
    params = cell.init_params(input_size=3, hidden_size=4, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)

    def loss(p):
        return (recurrent("mgu", p, x)[0] ** 2).sum()

    with pytest.raises(Exception, match="JVP"):
        jax.grad(lambda p: (jax.grad(loss)(p)["weight_hh"] ** 2).sum())(params)


# -- threads, caches and hyperparameters ----------------------------------------------------


def test_raising_the_thread_count_while_others_call_forward_never_fails():
    from generated import _interface

    cell = load_generated("lstm")
    params = cell.init_params(input_size=64, hidden_size=64, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((40, 64, 64)).astype(np.float32)
    assert _interface.SHARD_WORK <= 40 * 64 * 4 * 64 * 128  # every call is sharded
    want = cell.forward(x, None, params)[0]
    failures, done = [], threading.Event()

    def call():
        for _ in range(12):
            try:
                # shards of other sizes round differently (their tiles differ)
                np.testing.assert_allclose(cell.forward(x, None, params)[0], want, rtol=1e-5,
                                           atol=1e-6)  # fmt: skip
            except Exception as error:  # noqa: BLE001 - what a race raises is the finding
                failures.append(repr(error))

    def raise_count():
        count = 2
        while not done.is_set():
            _interface.set_threads(count)
            count += 1

    before = _interface._THREADS["count"]  # None: follow NUMBA_NUM_THREADS
    raiser = threading.Thread(target=raise_count)
    callers = [threading.Thread(target=call) for _ in range(3)]
    raiser.start()
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    done.set()
    raiser.join()
    _interface.set_threads(before)
    assert failures == []


def test_a_pool_handed_out_stays_usable_after_a_larger_one_replaces_it():
    """The race itself, without timing: a call holds the pool it was given while another
    call's larger thread count replaces it; submitting to the held pool must still work
    (it raised 'cannot schedule new futures after shutdown')."""
    from generated import _interface

    held = _interface._executor(2)
    _interface._executor(_interface._POOL["workers"] + 1)
    assert held.submit(sum, [1, 2]).result() == 3


def test_the_jax_function_cache_does_not_grow_with_hyperparameter_values():
    pytest.importorskip("jax")
    from derive.jax import _function, recurrent

    cell = load_generated("cornn")
    params = cell.init_params(input_size=3, hidden_size=4, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    recurrent("cornn", params, x)
    size = _function.cache_info().currsize
    for dt in np.linspace(0.01, 0.05, 40):
        ys, _ = recurrent("cornn", params, x, hypers={"dt": float(dt)})
    assert _function.cache_info().currsize == size
    want = cell.forward(x, None, params, dt=np.float32(dt))[0]
    np.testing.assert_allclose(np.asarray(ys), want, rtol=1e-6)


@pytest.mark.parametrize(("value", "dtype"), [(1e308, np.float32), (2**1100, np.float64),
                                              (2**1100, np.float32), (-1e39, np.float32)],
                         ids=["1e308-float32", "2^1100-float64", "2^1100-float32",
                              "-1e39-float32"])  # fmt: skip
def test_hyperparameters_are_checked_as_the_kernel_holds_them(value, dtype):
    cell = load_generated("cornn")
    params = cell.init_params(input_size=3, hidden_size=4, dtype=dtype, seed=0)
    x = np.zeros((2, 1, 3), dtype)
    with pytest.raises(
        ValueError, match=f"dt must be a finite.*{np.dtype(dtype).name}"
    ):
        cell.forward(x, None, params, dt=value)


def test_a_float32_layer_refuses_a_hyperparameter_float32_cannot_hold():
    torch = pytest.importorskip("torch")
    from derive.torch import Recurrent

    with pytest.raises(ValueError, match="dt must be a finite.*float32"):
        Recurrent("cornn", 3, 4, dt=1e308)
    assert Recurrent("cornn", 3, 4, dtype=torch.float64, dt=1e308).hypers["dt"] == 1e308


# -- derivation cost stays polynomial -------------------------------------------------------


def _deep(build, name="deep"):
    cell = Cell(name, title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("n")
    wx, wh = cell.dense(W_ih, x, bias=b_ih), cell.dense(W_hh, h.prev, bias=b_hh)
    cell.update(h, build(wx.n + wh.n, h.prev))
    return cell.build()


def _nested(depth, step):
    def build(e, _):
        for _ in range(depth):
            e = step(e)
        return e

    return build


def test_nested_applications_are_named_and_verify(tmp_path):
    """``tanh(e) * sigmoid(e)`` nested 8 deep (a tree of 2^8 leaves) derives as a chain of
    named values, and its kernel matches autograd."""
    spec = _deep(_nested(8, lambda e: tanh(e) * sigmoid(e)))
    named = [eq.target.name for eq in spec.equations if eq.role == "let"]
    # both applications of every level but the innermost (which hold none) and the outermost
    # (which no application holds)
    assert len(named) == 2 * 6
    assert all(declare.operations(eq.expr) < 20 for eq in spec.equations)
    _, module = build_kernel(spec, tmp_path)
    assert_verifies(spec, module)


def test_sympys_own_tanh_is_read_as_gatesmiths():
    spec = _deep(lambda e, _: sympy.tanh(sympy.tanh(sympy.tanh(e))))
    functions = {
        type(f) for eq in spec.equations for f in eq.expr.atoms(sympy.Function)
    }
    assert functions == {tanh}


@pytest.mark.parametrize(
    "step",
    [lambda e: tanh(e), lambda e: tanh(e) * sigmoid(e)],
    ids=["tanh", "tanh-sigmoid"],
)
def test_deep_nesting_grows_the_kernel_linearly(step):
    """30 levels: the equations, the derived adjoint and the kernel grow by a constant per
    level, where each level had doubled or re-asked SymPy's assumptions of the whole tree."""
    sizes = []
    for depth in (10, 20, 30):
        spec = _deep(_nested(depth, step))
        files = pipeline.kernel_files([spec], pipeline.Run(), package=False)
        sizes.append((len(spec.equations), len(files["deep.py"])))
    (n10, k10), (n20, k20), (n30, k30) = sizes
    assert n30 - n20 <= 2 * 10 * 2 + 2 and n30 - n20 <= n20 - n10 + 2
    # the last ten levels add about what the ten before them added: far from doubling
    assert 0 < k30 - k20 <= 1.25 * (k20 - k10)


def test_a_chain_a_thousand_applications_deep_recurses_nowhere():
    spec = _deep(_nested(1000, sigmoid))
    assert len(spec.equations) >= 999  # each application its own equation
    assert len(derive_adjoint(spec).terms) >= 999
    # the gradient-flow paths, found without recursion: a product of 300 factors prints, one
    # of 1000 is past what a document prints and is reported as such
    (jacobian,) = jacobians(derive_adjoint(_deep(_nested(300, sigmoid))))
    assert jacobian.paths and jacobian.diagonal == 0


def test_an_equation_too_large_to_derive_is_refused_with_its_size():
    def build(e, _):
        for _ in range(20):
            e = (e + 1) * (e + 2)  # a tree of about 2^20 nodes: no function to name
        return tanh(e)

    with pytest.raises(
        DeclarationError, match=r"test_hostile.py:\d+: .* operations"
    ) as error:
        _deep(build)
    count = int(re.search(r"has (\d+) operations", str(error.value)).group(1))
    assert count > MAX_OPERATIONS


def test_generate_verbose_reports_each_variant_as_it_is_derived(tmp_path, capsys):
    assert main(["generate", "rnn_tanh", "gru", "--out", str(tmp_path), "-v"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"rnn_tanh \(1/2\): \d+ equations derived and lowered", err)
    assert re.search(r"gru \(2/2\): \d+ equations derived and lowered", err)


# -- spec files ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["generate", "check", "verify"])
def test_a_spec_that_exits_is_an_error_naming_it(tmp_path, capsys, command):
    spec = tmp_path / "quits.py"
    spec.write_text("raise SystemExit(0)\n")
    args = [command, "--spec", str(spec)]
    if command != "verify":
        args += ["--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "quits.py:1: the spec file exited (SystemExit(0))" in err
    assert not (tmp_path / "out").exists()


def test_a_spec_that_is_a_folder_or_a_link_loop_says_so(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    out = str(tmp_path / "out")
    assert main(["generate", "--spec", str(tmp_path / "folder"), "--out", out]) == 2
    assert "a directory" in capsys.readouterr().err
    assert main(["generate", "--spec", str(tmp_path / "a"), "--out", out]) == 2
    assert "symbolic link that leads round in a loop" in capsys.readouterr().err


# -- tolerances follow the rounding accumulated ----------------------------------------------


def test_a_wide_sum_verifies_in_float32_under_a_tolerance_that_scales(tmp_path):
    from derive.verify import TOLERANCE, tolerance

    def build(e, prev):
        return (
            sum(
                sympy.Rational(k % 7 + 1, 7) * tanh(e + sympy.Rational(k, 50) * prev)
                for k in range(12)
            )
            / 4
        )

    spec = _deep(build, "wide")
    assert tolerance(spec, np.float32) > TOLERANCE[np.float32]
    assert tolerance(spec, np.float32) < 3 * TOLERANCE[np.float32]
    _, module = build_kernel(spec, tmp_path)
    assert_verifies(spec, module)


def test_an_exact_constant_of_large_terms_prints_as_itself():
    """``nsimplify`` rewrites some plain rationals as products of radicals the printer cannot
    print (97/2000, a coefficient of a sum of 110 terms ``tanh(e + k/50 h)``)."""
    from derive.emit.numba import NumbaPrinter, constant_name

    value = sympy.Rational(97, 2000)
    assert sympy.nsimplify(value) != value
    printer = NumbaPrinter()
    assert printer.doprint(value) == constant_name(value)
    assert printer.constants == {value}


def test_catalog_tolerances_are_the_fixed_ones():
    from derive import registry
    from derive.verify import TOLERANCE, tolerance

    for name in registry.names():
        for dtype in (np.float32, np.float64):
            assert tolerance(registry.get(name), dtype) == TOLERANCE[dtype], name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
