# SPDX-License-Identifier: MIT
"""Real programs that the tests compare waitd against (test support, not tests)."""
