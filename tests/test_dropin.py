"""The drop-ins ``derive.torch.LSTM``, ``GRU`` and ``RNN`` as PyTorch's own tests see them.

torch's ``ModuleInfo`` entries (``torch.testing._internal.common_modules``: the sample inputs
and error inputs of ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``, as the installed wheel ships them)
run against the subclasses; beside them: ``bias=False`` for every cell that has a bias-free
form, second derivatives (a gradient penalty and a Hessian-vector product against torch's own
cells, ``torch.func``), float16 and bfloat16, empty batches and sequences, errors of torch's
types, and whole-model checkpoints under ``torch.load``'s default weights-only loading.
"""

from __future__ import annotations

import copy
import io

import pytest
from conftest import VARIANTS, load_generated, sizes_for

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from derive import registry  # noqa: E402
from derive import torch as gtorch  # noqa: E402
from derive.runtime.layers import biases_to_drop  # noqa: E402
from derive.torch import GRU, LSTM, RNN, Recurrent, _DropIn  # noqa: E402
from derive.verify.twin import twin_forward  # noqa: E402

DROP_INS = {nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN}


def _twins(torch_class, *args, dtype=torch.float64, **kwargs):
    """torch's module and the drop-in, built from the same arguments, with the same weights."""
    ours = DROP_INS[torch_class](*args, dtype=dtype, **kwargs)
    theirs = torch_class(*args, dtype=dtype, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return theirs, ours


def _tensors(value):
    """The tensors of a nested output, in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return [value.data]
    return [t for item in value for t in _tensors(item)]


def _run(module, args, kwargs):
    """Outputs and the gradients of every input and parameter for a fixed random cotangent."""
    args, kwargs = copy.deepcopy((args, kwargs))
    leaves = [t for t in _tensors([*args, *kwargs.values()]) if t.requires_grad] + list(
        module.parameters()
    )
    outputs = _tensors(module(*args, **kwargs))
    generator = torch.Generator().manual_seed(0)
    cotangents = [
        torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in outputs
    ]
    grads = torch.autograd.grad(outputs, leaves, cotangents, allow_unused=True)
    return outputs, grads


def _module_db():
    common = pytest.importorskip("torch.testing._internal.common_modules")
    return [info for info in common.module_db if info.module_cls in DROP_INS]


# -- torch's own sample inputs and error inputs ------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_torch_module_info_samples(dtype, training):
    """Every sample input torch's ModuleInfo gives nn.RNN, nn.LSTM and nn.GRU: the drop-in's
    outputs, input gradients and parameter gradients match torch's."""
    tolerance = 1e-10 if dtype == torch.float64 else 2e-5
    # the samples are drawn from torch's generator: the same ones every run (unseeded, one
    # float32 gradient element in a few runs cancelled down to 2.2e-5 apart)
    torch.manual_seed(0)
    count = 0
    for info in _module_db():
        samples = info.module_inputs_func(
            info, device="cpu", dtype=dtype, requires_grad=True, training=training
        )
        for sample in samples:
            built = sample.constructor_input
            theirs, ours = _twins(
                info.module_cls, *built.args, dtype=dtype, **built.kwargs
            )
            theirs.train(training), ours.train(training)
            assert isinstance(ours, info.module_cls)
            forward = sample.forward_input
            got, d_got = _run(ours, forward.args, forward.kwargs)
            want, d_want = _run(theirs, forward.args, forward.kwargs)
            for a, b in zip([*got, *d_got], [*want, *d_want], strict=True):
                torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
            count += 1
    assert count >= 60  # 16 + 16 + 32 samples in torch 2.13


def test_torch_module_info_error_inputs():
    """Every error input torch's ModuleInfo gives: the same exception type, matching torch's
    own message, at construction or at forward as torch raises it."""
    common = pytest.importorskip("torch.testing._internal.common_modules")
    count = 0
    for info in _module_db():
        errors = info.module_error_inputs_func(
            info, device="cpu", dtype=torch.float32, requires_grad=False, training=True
        )
        for error in errors:
            built = error.module_error_input.constructor_input
            forward = error.module_error_input.forward_input
            cls = DROP_INS[info.module_cls]
            with pytest.raises(error.error_type, match=error.error_regex):
                if error.error_on == common.ModuleErrorEnum.CONSTRUCTION_ERROR:
                    cls(*built.args, **built.kwargs)
                else:
                    cls(*built.args, **built.kwargs)(*forward.args, **forward.kwargs)
            count += 1
    assert count >= 30


def _noncontiguous(value):
    """``value`` with every tensor replaced by an equal one that is not contiguous."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return value
        wide = torch.stack([value.detach(), value.detach()], dim=-1)[..., 0]
        return wide.requires_grad_(value.requires_grad)
    return type(value)(_noncontiguous(item) for item in value)


def test_torch_module_info_module_checks():
    """What torch's generic module tests ask of every sample: pickling and deepcopy keep the
    outputs; non-contiguous inputs give the outputs of contiguous ones; a module built on the
    meta device and materialised with ``to_empty`` runs once its state is loaded; a float32
    module moved ``.to(torch.float64)`` runs in float64."""
    import pickle

    for info in _module_db():
        samples = info.module_inputs_func(
            info, device="cpu", dtype=torch.float64, requires_grad=False, training=False
        )
        for sample in samples:
            built = sample.constructor_input
            _, ours = _twins(info.module_cls, *built.args, **built.kwargs)
            ours.eval()
            args = sample.forward_input.args
            with torch.no_grad():
                want = _tensors(ours(*args))
                for other in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
                    got = _tensors(other(*args))
                    for a, b in zip(got, want, strict=True):
                        torch.testing.assert_close(a, b, rtol=0, atol=0)
                got = _tensors(ours(*_noncontiguous(args)))
                for a, b in zip(got, want, strict=True):
                    torch.testing.assert_close(a, b, rtol=0, atol=0)
                cls = DROP_INS[info.module_cls]
                meta = cls(
                    *built.args, device="meta", dtype=torch.float64, **built.kwargs
                )
                meta.to_empty(device="cpu").load_state_dict(ours.state_dict())
                for a, b in zip(_tensors(meta.eval()(*args)), want, strict=True):
                    torch.testing.assert_close(a, b, rtol=0, atol=0)
                moved = cls(*built.args, dtype=torch.float32, **built.kwargs).to(
                    torch.float64
                )
                moved.load_state_dict(ours.state_dict())
                for a, b in zip(_tensors(moved.eval()(*args)), want, strict=True):
                    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torch_module_info_gradgradcheck():
    """torch's samples under gradgradcheck (ModuleInfo marks these modules as supporting
    second derivatives), a few of each module with and without biases."""
    for info in _module_db():
        samples = info.module_inputs_func(
            info, device="cpu", dtype=torch.float64, requires_grad=True, training=False
        )
        for sample in samples[:: max(1, len(samples) // 4)]:
            built = sample.constructor_input
            _, ours = _twins(info.module_cls, *built.args, **built.kwargs)
            ours.eval()
            names = [name for name, _ in ours.named_parameters()]
            args = copy.deepcopy(sample.forward_input.args)
            flat = [t for t in _tensors(args) if t.requires_grad]

            def run(*leaves, args=args, flat=flat, names=names, ours=ours):
                given = dict(zip(flat, leaves[: len(flat)], strict=True))
                rebuilt = _replace(args, given)
                params = dict(zip(names, leaves[len(flat) :], strict=True))
                return tuple(
                    _tensors(torch.func.functional_call(ours, params, rebuilt))
                )

            leaves = [*flat, *(p.detach().requires_grad_() for p in ours.parameters())]
            assert torch.autograd.gradgradcheck(run, leaves, fast_mode=True)


def _replace(value, given):
    if isinstance(value, torch.Tensor):
        return given.get(value, value)
    return type(value)(_replace(item, given) for item in value)


# -- the classes are torch's own -----------------------------------------------------------------


@pytest.mark.parametrize(
    "torch_class, kwargs",
    [
        (nn.LSTM, {}), (nn.LSTM, {"bias": False, "num_layers": 2, "bidirectional": True}),
        (nn.LSTM, {"proj_size": 2}), (nn.GRU, {"batch_first": True}),
        (nn.RNN, {"nonlinearity": "relu", "bias": False}), (nn.RNN, {"num_layers": 3}),
    ],
)  # fmt: skip
def test_drop_ins_are_torchs_classes(torch_class, kwargs):
    """isinstance, repr, state_dict keys, _flat_weights and all_weights are torch's."""
    theirs, ours = _twins(torch_class, 3, 4, **kwargs)
    assert isinstance(ours, (torch_class, nn.RNNBase))
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert [w.shape for w in ours._flat_weights] == [
        w.shape for w in theirs._flat_weights
    ]
    assert [[w.shape for w in ws] for ws in ours.all_weights] == [
        [w.shape for w in ws] for ws in theirs.all_weights
    ]
    assert ours.mode == theirs.mode


def test_recurrent_has_rnnbases_attributes():
    rnn = Recurrent("mgu", 3, 4, num_layers=2, bias=False, bidirectional=True)
    assert isinstance(rnn, nn.RNNBase) and rnn.mode == "mgu"
    assert rnn._flat_weights_names == [
        f"{w}_l{layer}{suffix}" for layer in range(2) for suffix in ("", "_reverse")
        for w in ("weight_ih", "weight_hh")
    ]  # fmt: skip
    assert [len(ws) for ws in rnn.all_weights] == [2, 2, 2, 2]
    assert "bias=False" in repr(rnn)
    replaced = nn.Parameter(torch.zeros_like(rnn.weight_hh_l0))
    rnn.weight_hh_l0 = replaced  # RNNBase keeps _flat_weights in step
    assert rnn._flat_weights[1] is replaced


# -- bias=False for every cell -------------------------------------------------------------------


def _biased(variant):
    cell = load_generated(variant)
    try:
        return biases_to_drop("test", cell)
    except ValueError:
        return ()


@pytest.mark.parametrize("variant", [v for v in VARIANTS if _biased(v)])
def test_bias_false_every_cell(variant):
    """Without biases: no bias parameters, and outputs and every gradient equal the
    declaration's with zero biases (the twin, float64, non-zero initial states, a padded
    row). The kernels are given biases of length 0 and add none."""
    cell = load_generated(variant)
    kwargs = sizes_for(cell, input_size=3, hidden_size=4, extra=2)
    extra = {k: v for k, v in kwargs.items() if k not in ("input_size", "hidden_size")}
    torch.manual_seed(0)
    rnn = Recurrent(variant, 3, 4, bias=False, dtype=torch.float64, **extra)
    names = {name for name, _ in rnn.named_parameters()}
    assert not names & {f"{b}_l0" for b in _biased(variant)}
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    states = tuple(
        torch.randn(
            1, 2, rnn._size(cell.STATE_SIZES[s]), dtype=torch.float64
        ).requires_grad_()
        for s in cell.STATES
    )
    lengths = torch.tensor([4, 2])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths)
    out, finals = rnn(packed, states[0] if len(states) == 1 else states)
    got = [nn.utils.rnn.pad_packed_sequence(out)[0], *_tensors(finals)]
    params = {n: getattr(rnn, f"{n}_l0", x.new_zeros(0)) for n in cell.PARAMS}
    ys, fins = twin_forward(
        registry.get(variant), x, tuple(s[0] for s in states), params, lengths=lengths
    )
    want = [ys, *(f[None] for f in fins)]
    leaves = [x, *states, *rnn.parameters()]
    cotangents = [torch.randn_like(w) for w in want]
    d_got = torch.autograd.grad(got, leaves, cotangents)
    d_want = torch.autograd.grad(want, leaves, cotangents)
    for a, b in zip([*got, *d_got], [*want, *d_want], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", ["mut1", "gru1", "nbrc", "sru"])
def test_bias_false_is_refused_where_the_equations_need_a_bias(variant):
    with pytest.raises(ValueError, match=f"{variant} has no bias-free form"):
        Recurrent(variant, 4, 4, bias=False)


# -- second derivatives ---------------------------------------------------------------------------


@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.GRU, nn.RNN])
def test_gradient_penalty_and_hessian_vector_product_match_torch(torch_class):
    """A gradient penalty ``loss + 10 |dL/dW|^2`` and a Hessian-vector product in the
    parameters equal torch's own cell's to 1e-9 (float64, two layers, non-zero states)."""
    theirs, ours = _twins(torch_class, 3, 4, num_layers=2)
    torch.manual_seed(1)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    directions = [torch.randn_like(p) for p in ours.parameters()]
    results = []
    for module in (theirs, ours):
        out, _ = module(x)
        loss = out.pow(2).sum()
        grads = torch.autograd.grad(loss, list(module.parameters()), create_graph=True)
        penalty = loss + 10 * sum(g.pow(2).sum() for g in grads)
        d_penalty = torch.autograd.grad(penalty, list(module.parameters()))
        names = [name for name, _ in module.named_parameters()]

        def loss_of(*params, module=module, names=names):
            out, _ = torch.func.functional_call(
                module, dict(zip(names, params, strict=True)), (x,)
            )
            return out.pow(2).sum()

        params = tuple(p.detach() for p in module.parameters())
        _, hvp = torch.autograd.functional.hvp(loss_of, params, tuple(directions))
        results.append([*d_penalty, *hvp])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert sum(float(h.abs().sum()) for h in results[1][-len(directions) :]) > 0


def test_torch_func_grad_vmap_and_jacrev():
    """torch.func's transforms through the kernels: grad equals autograd's gradient, vmap the
    loop over the mapped inputs, jacrev the Jacobian autograd builds row by row."""
    torch.manual_seed(2)
    rnn = Recurrent("mgu", 3, 4, dtype=torch.float64)
    params = {name: p.detach() for name, p in rnn.named_parameters()}
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def loss(params, x):
        return torch.func.functional_call(rnn, params, (x,))[0].pow(2).sum()

    got = torch.func.grad(loss)(params, x)
    want = torch.autograd.grad(
        loss(dict(rnn.named_parameters()), x), list(rnn.parameters())
    )
    for a, b in zip(got.values(), want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    xs = torch.randn(3, 5, 2, 3, dtype=torch.float64)
    mapped = torch.func.vmap(lambda x: rnn(x)[0])(xs)
    torch.testing.assert_close(mapped, torch.stack([rnn(x)[0] for x in xs]))
    jacobian = torch.func.jacrev(lambda x: rnn(x)[1])(x)
    torch.testing.assert_close(
        jacobian, torch.autograd.functional.jacobian(lambda x: rnn(x)[1], x)
    )


def test_per_sample_gradients_and_the_tape_kept_once(monkeypatch):
    """vmap of grad (per-sample gradients) equals the gradients taken one sample at a time:
    the tape each slice's forward kept does not reach the batched backward, which runs the
    forward again for one. A plain backward reads the tape its forward kept and runs the
    forward once; so does a second backward through a retained graph."""
    torch.manual_seed(3)
    rnn = LSTM(3, 4, dtype=torch.float64)
    params = {name: p.detach() for name, p in rnn.named_parameters()}

    def loss(params, x):
        return torch.func.functional_call(rnn, params, (x,))[0].pow(2).sum()

    xs = torch.randn(3, 5, 2, 3, dtype=torch.float64)
    runs = []
    counted = gtorch._run

    def counting(*args):
        runs.append(args[-1])
        return counted(*args)

    monkeypatch.setattr(gtorch, "_run", counting)
    batched = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, xs)
    assert runs == [True] * 6  # each slice's forward, then each slice's again
    for n, x in enumerate(xs):
        one = torch.func.grad(loss)(params, x)
        for name, value in one.items():
            torch.testing.assert_close(batched[name][n], value, rtol=1e-12, atol=1e-12)
    runs.clear()
    x = xs[0].clone().requires_grad_()
    out = rnn(x)[0].pow(2).sum()
    first = torch.autograd.grad(out, x, retain_graph=True)[0]
    again = torch.autograd.grad(out, x)[0]
    assert runs == [True]
    torch.testing.assert_close(first, again, rtol=0, atol=0)


@pytest.mark.parametrize("how", ["reentrant", "non-reentrant", "save_on_cpu"])
def test_activation_checkpointing_and_saved_tensor_hooks(how):
    """torch.utils.checkpoint (both modes) and saved-tensor hooks (save_on_cpu) around the
    drop-in: the gradients nn.LSTM's, the tape's holder saved and unpacked like any tensor."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(5)
    ours = LSTM(4, 5, dtype=torch.float64)
    theirs = nn.LSTM(4, 5, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    grads = []
    for module in (ours, theirs):
        leaf = x.clone().requires_grad_()
        if how == "save_on_cpu":
            with torch.autograd.graph.save_on_cpu():
                out = module(leaf)[0]
        else:
            reentrant = how == "reentrant"
            out = checkpoint(lambda v: module(v)[0], leaf, use_reentrant=reentrant)  # noqa: B023
        out.pow(2).sum().backward()
        grads.append([leaf.grad, *(p.grad for p in module.parameters())])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# -- dtypes, empty problems, errors, checkpoints ---------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.GRU])
def test_half_precision_as_torch_runs_it(dtype, torch_class):
    """float16 and bfloat16 modules run (in float32 inside): outputs and gradients within the
    error torch's own cell makes in that dtype, both measured against float64."""
    theirs, ours = _twins(torch_class, 8, 16, num_layers=2)
    exact, _ = _twins(torch_class, 8, 16, num_layers=2)
    exact.load_state_dict(ours.state_dict())
    torch.manual_seed(3)
    x = torch.randn(6, 4, 8, dtype=torch.float64)
    reference = _run(exact, (x,), {})
    errors = []
    for module in (theirs.to(dtype), ours.to(dtype)):
        outputs, grads = _run(module, (x.to(dtype),), {})
        assert all(t.dtype == dtype for t in [*outputs, *grads])
        errors.append(
            max(
                float((a.detach().double() - b).abs().max())
                for a, b in zip(
                    [*outputs, *grads], [*reference[0], *reference[1]], strict=True
                )
            )
        )
    assert errors[1] <= 2 * errors[0] + 1e-3, errors


@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.GRU, nn.RNN])
def test_empty_batch_and_empty_sequence_as_torch(torch_class):
    theirs, ours = _twins(torch_class, 3, 4, num_layers=2)
    x = torch.randn(5, 0, 3, dtype=torch.float64, requires_grad=True)
    got, want = _run(ours, (x,), {}), _run(theirs, (x,), {})
    for a, b in zip(got[0], want[0], strict=True):
        assert a.shape == b.shape
    for a, b in zip(got[1], want[1], strict=True):
        assert (a is None) == (b is None) and (a is None or a.shape == b.shape)
    for module in (theirs, ours):
        with pytest.raises(
            RuntimeError, match="Expected sequence length to be larger than 0"
        ):
            module(torch.randn(0, 2, 3, dtype=torch.float64))


BAD = [
    ((3, 4), {"bias": "yes"}, None),
    ((3, 4), {"batch_first": "True"}, None),
    ((3.0, 4), {}, None),
    ((3, 0), {}, None),
    ((3, 4), {"num_layers": 0}, None),
    ((3, 4), {"dropout": 2.0}, None),
    ((3, 4), {}, lambda m: m(torch.randn(5, 2, 4, dtype=torch.float64))),
    ((3, 4), {}, lambda m: m(torch.randn(5, 2, 3))),
    ((3, 4), {}, lambda m: m(torch.randn(5, 2, 3, 1, dtype=torch.float64))),
    ((3, 4), {}, lambda m: m(torch.randn(5, 2, 3, dtype=torch.float64),
                             _hx(m, torch.zeros(1, 3, 4, dtype=torch.float64)))),
    ((3, 4), {}, lambda m: m(torch.randn(5, 2, 3, dtype=torch.float64),
                             _hx(m, torch.zeros(2, 4, dtype=torch.float64)))),
    ((3, 4), {}, lambda m: m(torch.randn(5, 3, dtype=torch.float64),
                             _hx(m, torch.zeros(1, 2, 4, dtype=torch.float64)))),
]  # fmt: skip


def _hx(module, h):
    return (h, h) if isinstance(module, nn.LSTM) else h


@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("args, kwargs, call", BAD)
def test_errors_have_torchs_types(torch_class, args, kwargs, call):
    """For the same bad argument, the drop-in raises the exception type torch raises."""
    raised = []
    for cls in (torch_class, DROP_INS[torch_class]):
        with pytest.raises(Exception) as caught:  # noqa: B017 - the type is what is compared
            module = cls(*args, dtype=torch.float64, **kwargs)
            if call is None:
                raise AssertionError("built without error")
            call(module)
        raised.append(caught.type)
    assert raised[0] is not AssertionError
    assert raised[1] is raised[0]


def test_whole_model_checkpoints_load_weights_only():
    """torch.save of the modules themselves, torch.load with its default weights_only=True:
    no add_safe_globals, same outputs."""
    torch.manual_seed(4)
    x = torch.randn(5, 2, 3)
    for module in (LSTM(3, 4, num_layers=2), GRU(3, 4, bias=False), RNN(3, 4),
                   Recurrent("lstm_peephole", 3, 4), Recurrent("cornn", 3, 4, dt=0.1)):  # fmt: skip
        buffer = io.BytesIO()
        torch.save(module, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer)
        assert type(loaded) is type(module)
        for a, b in zip(_tensors(loaded(x)), _tensors(module(x)), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- export ----------------------------------------------------------------------------------------


class _Head(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def _onnx(model, x, path, dynamo):
    """The ONNX operators ``model`` exports to, and onnxruntime's outputs for ``x``."""
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.onnx.export(model, (x,), str(path), dynamo=dynamo, verbose=False)
    operators = {node.op_type for node in onnx.load(str(path)).graph.node}
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return operators, got


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize(
    "make",
    [lambda: LSTM(3, 4, num_layers=2), lambda: GRU(3, 4, bias=False),
     lambda: RNN(3, 4, nonlinearity="relu"), lambda: Recurrent("mgu", 3, 4)],
    ids=["LSTM", "GRU", "RNN", "mgu"],
)  # fmt: skip
def test_onnx_export_runs_in_onnxruntime(make, dynamo, tmp_path):
    """Both exporters: a drop-in exports to exactly the operators torch's own class exports to
    (ONNX's LSTM and GRU), any other cell to its steps unrolled into ONNX operations;
    onnxruntime gives the model's outputs."""
    torch.manual_seed(5)
    model = _Head(make()).eval()
    x = torch.randn(5, 2, 3)
    operators, got = _onnx(model, x, tmp_path / "model.onnx", dynamo)
    with torch.no_grad():
        assert abs(got - model(x).numpy()).max() < 1e-5
    if isinstance(model.rnn, _DropIn):
        base = type(model.rnn).__mro__[3]  # torch's own class
        assert isinstance(model.rnn, base) and base.__module__.startswith("torch.nn")
        twin = _Head(base(3, 4, num_layers=model.rnn.num_layers, bias=model.rnn.bias,
                          nonlinearity=model.rnn.nonlinearity) if base is nn.RNN else
                     base(3, 4, num_layers=model.rnn.num_layers, bias=model.rnn.bias))  # fmt: skip
        twin.load_state_dict(model.state_dict())
        assert operators == _onnx(twin.eval(), x, tmp_path / "torch.onnx", dynamo)[0]
        if base is not nn.RNN:
            assert base.__name__ in operators
    else:
        assert {"Sigmoid", "Tanh", "MatMul"} <= operators


@pytest.mark.parametrize(
    "make", [lambda: LSTM(3, 4), lambda: Recurrent("lstm_peephole", 3, 4)]
)
def test_torch_export_and_jit_trace(make):
    """torch.export.export and torch.jit.trace hold the model (torch's own forward for a
    drop-in, the declaration's torch operations otherwise), and tracing warns of nothing in
    gatesmith's code."""
    import warnings

    torch.manual_seed(6)
    model = _Head(make()).eval()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        want = model(x)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), want, rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, (x,))
    ours = [
        w
        for w in caught
        if "derive" in w.filename or isinstance(w.message, torch.jit.TracerWarning)
    ]
    assert not ours, [str(w.message) for w in ours]
    torch.testing.assert_close(traced(x), want, rtol=1e-6, atol=1e-6)


def test_torch_compile_treats_the_drop_ins_as_torchs_own():
    """torch.compile breaks the graph at an LSTM as it does at torch's (and traces through the
    custom ops with ``allow_rnn``, fullgraph): outputs and gradients of the eager module."""
    torch.manual_seed(7)
    model = _Head(LSTM(3, 4, num_layers=2))
    x = torch.randn(5, 2, 3)
    want = model(x)
    d_want = torch.autograd.grad(want.sum(), list(model.parameters()))
    for fullgraph in (False, True):
        with torch._dynamo.config.patch(allow_rnn=fullgraph):
            torch._dynamo.reset()
            compiled = torch.compile(model, backend="eager", fullgraph=fullgraph)
            got = compiled(x)
            d_got = torch.autograd.grad(got.sum(), list(model.parameters()))
        for a, b in zip([got, *d_got], [want, *d_want], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
