# SPDX-License-Identifier: MIT
"""`python -m waitd` runs the waitd command."""

import sys

from waitd.cli.main import main

sys.exit(main())
