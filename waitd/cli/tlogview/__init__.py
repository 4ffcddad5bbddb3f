# SPDX-License-Identifier: MIT
"""tlogview (being split into read, follow and show: see read.py)."""

from waitd.cli.tlogview.read import *  # noqa: F403
from waitd.cli.tlogview.read import main as main
