# SPDX-License-Identifier: MIT
"""`python -m waitd` runs the waitd command."""

import sys

from waitd.cli import main

sys.exit(main())
