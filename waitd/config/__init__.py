# SPDX-License-Identifier: MIT
"""The table, record options, waitd.conf and PASSDIR's names: parse and check, pure."""
