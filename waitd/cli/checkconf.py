# SPDX-License-Identifier: MIT
"""`waitd --check` of waitd.conf.

`check_conf` prints its errors (exit 2), or, with -v, each section as it
will be used, and a summary line.  `check` looks at each `[source NAME]`
with the table: its queue should be one waitd can make (Q/incoming, tmp, errors, pending; the source's
process logs it and tries again otherwise: a mount may come later), and
some record with claim=yes should take from its Q/incoming (the messages
would wait there otherwise): `warn` prints them on standard error.
`summary` ends the check of a valid waitd.conf: each source as it will
be used (`--check -v`), and how many sinks and sources it has.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from waitd.config import conf, table
from waitd.config.errors import EXIT_USAGE, TableError
from waitd.spool import queue


def check(settings: conf.Conf, records: Sequence[table.Record]) -> list[str]:
    lines: list[str] = []
    taken = {os.path.normpath(r.directory) for r in records}
    for source in settings.sources:
        where = f"{settings.path}:{source.line}: [source {source.name}]"
        q = queue.Queue(source.queue)
        why = q.cannot_make()
        if why is not None:
            lines.append(f"{where}: warning: queue = {source.queue}: {why}; the source tries again until it can")
        elif os.path.normpath(q.incoming) not in taken:
            lines.append(f"{where}: warning: no record takes files from {q.incoming}; its messages would wait")
    return lines


def warn(settings: conf.Conf, records: Sequence[table.Record]) -> None:
    for line in check(settings, records):
        print(line, file=sys.stderr)


def summary(settings: conf.Conf, verbose: bool) -> None:
    """The end of a valid waitd.conf's check: with -v each source as it
    will be used, then how many sinks and sources it has."""
    for s in settings.sources if verbose else ():
        print(f"[source {s.name}] ({settings.path}:{s.line}): {s.described()}")
    sources = f", {len(settings.sources)} source(s)" if settings.sources else ""
    print(f"{settings.path}: {len(settings.sinks)} sink(s){sources}, valid")


def check_conf(settings: conf.Conf, errors: list[TableError], verbose: bool) -> int:
    """--check of waitd.conf: its errors (exit 2), or one line; with -v, each
    sink as it will be used.  No waitd.conf is fine: it is optional."""
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{settings.path}: {table.summary(errors)}; waitd.conf is invalid", file=sys.stderr)
        return EXIT_USAGE
    if not os.path.exists(settings.path):
        return 0
    if verbose:
        d = settings.daemon
        metrics = f"{d.metrics[0]}:{d.metrics[1]}" if d.metrics else "(none)"
        http = f"{d.http[0]}:{d.http[1]}" if d.http else "(none)"
        print(
            f"[daemon] jobs={d.jobs or '(no cap)'} instance={d.instance or '(default)'} metrics={metrics} http={http}"
        )
        for sink in settings.sinks:
            records = " ".join(map(str, sorted(sink.records))) if sink.records is not None else "(all)"
            keys = " ".join(f"{k}={v}" for k, v in sink.settings.items() if k != "password")
            print(
                f"[sink {sink.name}] ({settings.path}:{sink.line}): type={sink.type} records={records} "
                f"retry={sink.retry_s:g} retry-max={sink.retry_max_s:g} {keys}"
            )
        if settings.celery is not None:
            from waitd.run.executors import celery_app

            broker = celery_app.shown_url(settings.celery.broker)  # never its password
            print(f"[celery] broker={broker} queue={settings.celery.queue}")
    summary(settings, verbose)
    return 0
