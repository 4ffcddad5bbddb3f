# SPDX-License-Identifier: MIT
"""tlogview: read waitd's logs (placeholder until issue 4)."""

import sys


def main() -> int:
    print("tlogview: not written yet", file=sys.stderr)
    return 1
