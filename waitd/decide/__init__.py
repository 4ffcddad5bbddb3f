# SPDX-License-Identifier: MIT
"""Pure decisions: facts and time in, actions out; no I/O."""
