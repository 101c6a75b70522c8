"""The symbolic core: the declaration language and the derivation of the adjoint.

:mod:`~derive.symbolic.declare` (cells as frozen data), :mod:`~derive.symbolic.activations`
(one descriptor per activation) and :mod:`~derive.symbolic.adjoint` (reverse mode over one
step). It imports neither Jinja nor Numba, nor any emitter.
"""
