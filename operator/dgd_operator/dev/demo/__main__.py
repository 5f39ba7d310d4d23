"""`python -m dgd_operator.dev.demo`: see the package docstring."""

import sys

from dgd_operator.dev.demo.run import main

sys.exit(main())
