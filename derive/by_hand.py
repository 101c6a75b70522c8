"""Two custom cells written by hand as PyTorch loops over time steps, as a user without
gatesmith would write them: what ``gatesmith bench`` times as ``eager`` and, under
``torch.jit.script``, as ``torchscript``. The input projection of all steps is one product.

``x`` is ``(T, B, I)``; the parameters are the generated modules' (PyTorch's layout); each
returns the outputs ``(T, B, H)``.
"""

import torch

__all__ = ["mgu", "peephole"]


def peephole(x, h, c, w_ih, w_hh, b_ih, b_hh, p_i, p_f, p_o):
    kx = torch.matmul(x, w_ih.t()) + b_ih
    outs = []
    for t in range(x.size(0)):
        i, f, g, o = (kx[t] + torch.mm(h, w_hh.t()) + b_hh).chunk(4, 1)
        i = torch.sigmoid(i + p_i * c)
        f = torch.sigmoid(f + p_f * c)
        c = f * c + i * torch.tanh(g)
        h = torch.sigmoid(o + p_o * c) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


def mgu(x, h, w_ih, w_hh, b_ih, b_hh):
    size = h.size(1)
    kx = torch.matmul(x, w_ih.t()) + b_ih
    outs = []
    for t in range(x.size(0)):
        f = torch.sigmoid(kx[t, :, :size] + torch.mm(h, w_hh[:size].t()) + b_hh[:size])
        n = torch.tanh(kx[t, :, size:] + torch.mm(f * h, w_hh[size:].t()) + b_hh[size:])
        h = (1 - f) * h + f * n
        outs.append(h)
    return torch.stack(outs)
