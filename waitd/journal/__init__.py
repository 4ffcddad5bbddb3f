# SPDX-License-Identifier: MIT
"""The one writer and reader of what waitd has done: the history and the outbox."""
