"""The built-in variants; importing this package registers them."""

from . import pytorch  # noqa: F401
