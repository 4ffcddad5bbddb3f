# SPDX-License-Identifier: MIT
"""The daemon: its loop, the records' state, the control socket, start-up, signals."""
