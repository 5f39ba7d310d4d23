"""``python -m dgd_runtime.worker``: see :mod:`dgd_runtime.worker.cli`."""

from dgd_runtime.worker.cli import main

raise SystemExit(main())
