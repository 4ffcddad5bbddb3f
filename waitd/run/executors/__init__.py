# SPDX-License-Identifier: MIT
"""How a run's handler is executed: on this host, or on a Celery worker."""
