# SPDX-License-Identifier: MIT
"""`waitd worker`: the Celery app and its task."""
