# SPDX-License-Identifier: MIT
"""The sink processes and each kind of sink, the metrics, systemd's notifications."""
