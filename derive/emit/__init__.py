"""The emitters: everything that prints a plan or a document, and writes files.

:mod:`~derive.emit.numba` prints a kernel plan as Numba source, :mod:`~derive.emit.latex` builds
the derivation document and prints its mathematics, :mod:`~derive.emit.templates` lays both out
with Jinja and stamps them, :mod:`~derive.emit.write` writes files atomically and only when
their bytes change, :mod:`~derive.emit.pdf` compiles documents with pdflatex.
"""
