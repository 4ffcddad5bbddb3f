# SPDX-License-Identifier: MIT
"""The command lines: waitd, tlogview, the -s verbs, --demo."""
