# SPDX-License-Identifier: MIT
"""Runs: their state machine, applying the scheduler's actions, the executors."""
