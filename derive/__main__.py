"""``python -m derive`` is the ``gatesmith`` command."""

from .cli import main

raise SystemExit(main())
