# SPDX-License-Identifier: MIT
"""The one writer and reader of what waitd has done: the history, the outbox, and its own log."""
