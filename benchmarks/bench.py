"""The performance benchmark: ``python benchmarks/bench.py [options]``, the same as
``gatesmith bench``. ``--help`` lists the options; results go to ``benchmarks/results/``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from derive.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
