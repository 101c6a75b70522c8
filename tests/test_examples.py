"""The demo under examples/: a smoke run of every part, and the gradient-flow measure."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import numpy as np
import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo", ROOT / "examples" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_samples_table_and_files(demo, tmp_path, capsys):
    assert demo.main(["--quick", "mgu", "lstm_proj", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    variants = ("rnn_tanh", "lstm", "gru", "mgu", "lstm_proj")
    lines = out.splitlines()
    for variant in variants:
        sample = next(line for line in lines if line.split()[:1] == [variant])
        text = sample.split()[1].strip("'")
        assert len(text) == 5 and text[0] == "h" and set(text) <= set("helo")
        assert any(
            line.split()[:1] == [variant] and line.split()[2:3] in (["yes"], ["no"])
            for line in lines
        )
    payload = json.loads((tmp_path / "gradient_flow.json").read_text())
    assert set(payload["gradient_norms"]) == set(variants)
    for flows in payload["gradient_norms"].values():
        for norms in flows.values():
            assert len(norms) == payload["steps"] and all(n > 0 for n in norms)
    assert f"wrote {tmp_path / 'gradient_flow.json'}" in out
    # the console and the plot's title print one number for what reaches step 1
    for variant, flows in payload["gradient_norms"].items():
        line = next(
            line for line in lines
            if line.split()[:1] == [variant] and "after training" in line
        )  # fmt: skip
        assert f"{demo.carried(flows['trained']):.1e} after training" in line
    title = demo._takeaway(payload["gradient_norms"], payload["steps"])
    numbers = re.findall(r"\d\.\de[-+]\d+", title)
    assert len(numbers) == 2 and all(f"{n} after training" in out for n in numbers)
    if importlib.util.find_spec("matplotlib"):
        image = tmp_path / "gradient_flow.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {image}" in out


def test_gradient_flow_matches_torch_autograd_through_each_state(demo):
    torch = pytest.importorskip("torch")
    model = demo.Model("lstm", 2, 8, 1, seed=3)
    x, _ = demo.adding_batch(np.random.default_rng(0), 30, 1)
    norms = demo.gradient_flow(model, x)
    cell = torch.nn.LSTMCell(2, 8)
    cell.load_state_dict(
        {k.removesuffix("_l0"): torch.tensor(v) for k, v in model.net.params.items()}
    )
    h = c = torch.zeros(1, 8)
    states = []
    for step in torch.tensor(x):
        h, c = cell(step, (h, c))
        h.retain_grad()
        states.append(h)
    (h[0] * torch.tensor(model.readout["weight"][0])).sum().backward()
    want = [float(s.grad.norm()) for s in states]
    np.testing.assert_allclose(norms, want, rtol=1e-4)


def test_plain_rnn_gradients_vanish_where_an_lstm_keeps_them(demo):
    x, _ = demo.adding_batch(np.random.default_rng(1), 40, 1)
    rnn = demo.gradient_flow(demo.Model("rnn_tanh", 2, 32, 1, 0), x)
    lstm = demo.gradient_flow(demo.Model("lstm", 2, 32, 1, 0, forget_bias=1.0), x)
    assert rnn[0] / rnn[-1] < 1e-6
    assert lstm[0] / lstm[-1] > 1e3 * rnn[0] / rnn[-1]


def test_char_model_trains_samples_times_and_plots(tmp_path, capsys):
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "char_model", ROOT / "examples" / "char_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    options = ["--iterations", "30", "--hidden", "16", "--length", "16", "--batch", "4"]
    assert module.main(["gru", *options, "--repeats", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sample: The " in out and "eager PyTorch loop" in out
    record = json.loads((tmp_path / "gru.json").read_text())
    assert len(record["loss"]) == 30 and record["loss"][-1] < record["loss"][0]
    assert set(record["step_seconds"]) == {"gatesmith", "eager PyTorch"}
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "gru_loss.png").read_bytes()[:4] == b"\x89PNG"


def test_char_model_eager_loop_computes_what_the_kernels_compute():
    """The timing's contender is the same function: outputs and gradients agree."""
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "char_model", ROOT / "examples" / "char_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.CharModel("lstm_peephole", 11, 8, 2).double()
    eager = module.EagerRecurrent(model.rnn)
    x = torch.randn(3, 5, 32, dtype=torch.float64)
    want, _ = model.rnn(x)
    got, _ = eager(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(got.sum(), list(model.rnn.parameters()))
    wants = torch.autograd.grad(model.rnn(x)[0].sum(), list(model.rnn.parameters()))
    for a, b in zip(grads, wants, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_word_language_model_tracks_torchs_lstm(tmp_path, capsys, monkeypatch):
    """examples/word_language_model.py with only the LSTM's import changed: its losses track
    nn.LSTM's step for step, its whole-model checkpoint reloads under weights-only loading with
    the same loss, it samples words, and its ONNX export (ONNX's own LSTM operator) matches
    the model under onnxruntime."""
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    spec = importlib.util.spec_from_file_location(
        "word_language_model", ROOT / "examples" / "word_language_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "word_language_model", module)  # pickled by name
    spec.loader.exec_module(module)
    records = {
        backend: module.main(["--quick", "--backend", backend, "--out", str(tmp_path)])
        for backend in ("torch", "gatesmith")
    }
    ours, theirs = records["gatesmith"], records["torch"]
    assert len(ours["losses"]) == len(theirs["losses"]) >= 10
    assert (
        max(abs(a - b) for a, b in zip(ours["losses"], theirs["losses"], strict=True))
        < 1e-3
    )
    assert ours["losses"][-1] < ours["losses"][0]
    assert ours["checkpoint_same"] and ours["onnx_difference"] < 1e-5
    graph = onnx.load(str(tmp_path / "word_lm_gatesmith.onnx")).graph
    assert "LSTM" in {node.op_type for node in graph.node}
    out = capsys.readouterr().out
    assert (
        "reloaded with weights_only=True, same loss: True" in out and "sample: " in out
    )


def test_awd_language_model_trains_each_cell_with_its_regularisers(tmp_path, cell_cache):
    """examples/awd_language_model.py, briefly, zoneout on too: every cell trains with weight
    drop, recurrent dropout and zoneout through its regularised kernels, its perplexities are
    below the uniform guess's and written as JSON; the declared cell starts as declared."""
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "awd_language_model", ROOT / "examples" / "awd_language_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = module.main(["--quick", "--zoneout", "0.1", "--out", str(tmp_path)])
    assert record == json.loads((tmp_path / "awd_lm.json").read_text())
    results = record["results"]
    assert list(results) == list(module.CELLS)
    for name, result in results.items():
        assert 1 < result["test"] < record["vocabulary"] * 0.8, (name, result)
        assert result["valid"] == min(result["history"])
    args = module.parse(["--zoneout", "0.1"])
    model = module.AWDModel(module.derive.build(module.cifg_chrono), 50, args)
    rnn = model.rnns[0]
    assert rnn.regularisation.module(True).endswith(".cifg_chrono_zoneout_rdrop")
    forget = rnn.bias_l0[: rnn.hidden_size]
    assert torch.all((forget >= 0) & (forget <= np.log(34) + 1e-6))  # chrono(35)
    sentences = module.sentences(200, seed=3)
    assert sentences == module.sentences(200, seed=3)  # the corpus is seeded
    assert all(s[-1] == "<eos>" and "<eos>" not in s[:-1] for s in sentences)
