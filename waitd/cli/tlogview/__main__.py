# SPDX-License-Identifier: MIT
"""`python -m waitd.cli.tlogview`: the tlogview command (the tests run it so)."""

import sys

from waitd.cli.tlogview import main

sys.exit(main())
