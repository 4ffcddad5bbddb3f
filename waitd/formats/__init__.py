# SPDX-License-Identifier: MIT
"""Every on-disk and on-wire format of waitd, one module each: encode and decode, nothing else."""
