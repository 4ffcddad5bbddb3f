# SPDX-License-Identifier: MIT
"""The HTTP server's start: `--http` (or `[daemon] http =`) with its
`[http]` control and token, from the daemon's settings (`http.Http`).

`start` returns None without --http (and imports no HTTP code then); it raises WaitdError when the
address cannot be listened on or the token file cannot be used (waitd
does not start: a page that a user asked for is not silently missing).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from waitd.config.conf import Conf
from waitd.config.passdir import history_path
from waitd.daemon.events import Events
from waitd.journal.writer import Journal

if TYPE_CHECKING:
    from waitd.daemon.http import Answer, Http
    from waitd.daemon.loop import Settings

log = logging.getLogger("waitd")


def start(settings: Settings, conf: Conf, events: Events, journal: Journal) -> Http | None:
    if settings.http is None:
        return None
    # Imported here: http.server and what it brings (email, socketserver)
    # are not worth the start-up time and memory of a daemon without --http.
    from waitd.daemon.http import Http, read_token
    from waitd.sinks.metrics import Metrics

    token = None
    if conf.http.control and conf.http.token is not None:
        token = read_token(os.path.join(settings.passdir, conf.http.token))
    metrics = events.metrics
    if metrics is None:
        # /metrics: the registry --metrics would serve, without its own server
        metrics = events.metrics = Metrics("", None)
        journal.observers.append(metrics.observe)
        journal.sync_observers.append(metrics.synced)
    exposition = metrics.exposition if metrics is not None else None
    server = Http(*settings.http, token, exposition, history_path(settings.passdir))
    journal.observers.append(server.ended)
    host, port = server.address[:2]
    log.info("waitd: status page on http://%s:%d/ (%s)", host, port, "control by token" if token else "read-only")
    return server


def snapshot(server: Http | None, doc: dict[str, Any]) -> dict[str, Any]:
    """Hand a status document over to the server (whole: its thread only
    reads it); the document."""
    if server is not None:
        server.snapshot(doc)
    return doc


def close(server: Http | None) -> None:
    if server is not None:
        server.close()


def fileno(server: Http | None) -> int | None:
    return server.fileno() if server is not None else None


def serve(server: Http | None, answer: Answer) -> None:
    """Answer what HTTP asked of the loop (`Commands.answer`)."""
    if server is not None:
        server.serve(answer)
