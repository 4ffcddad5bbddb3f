# SPDX-License-Identifier: MIT
"""waitd: wait for files to arrive in spool directories, then process them."""

__version__ = "0.1.0"
