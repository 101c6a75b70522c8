"""gatesmith: recurrent cells declared once in SymPy; gradients, kernels and documents derived.

The pipeline has five stages, one module each, driven by :func:`derive.pipeline.run`:

``declare``  (:mod:`derive.declare`, :mod:`derive.cells`)
    a cell's forward step as frozen data: sizes, states, parameters, dense projections and
    pointwise SymPy equations;
``derive``   (:mod:`derive.adjoint`)
    symbolic reverse mode over one step, every derivative written through saved forward values;
``lower``    (:mod:`derive.lower`)
    the schedule (what runs for all steps at once, what per step), CSE, what the forward pass
    saves, all printed by :mod:`derive.printing`;
``render``   (:mod:`derive.render`)
    Jinja templates lay out the printed pieces into a Numba module;
``write``    (:mod:`derive.write`)
    stamped files, written atomically and only when their bytes change.

The symbolic stages import neither Jinja nor Numba; the generated modules import nothing of
``derive``.
"""

__version__ = "0.1.0"
