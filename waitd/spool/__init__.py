# SPDX-License-Identifier: MIT
"""The effects on directories: listing and file facts, inotify, queue moves."""
