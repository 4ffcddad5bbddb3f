# SPDX-License-Identifier: MIT
"""The daemon's life around its turns: signals, the table, the start and the exit.

`act` acts on the signals caught since the last turn, each once: TERM
stops (any -> STOPPING: nothing starts, the stop timeout runs), INT
hibernates (ACTIVE -> HIBERNATING: nothing starts, nothing is removed),
CONT resumes (HIBERNATING -> ACTIVE), ALRM lists every directory, HUP
reloads; an operator's signal shows in the status at once.  `exit_status`
is what a stop (or the end of --once's drain) leaves to say, and the exit
status: 1 when an end could not be written, or, with --once, when a start
failed, a record is inactive, or files of the drain were left.  `recover`
is what a start finds of a previous life: its open runs (`run.adopt`) and
its queue files in pending (`claims.recover`).

`install` takes a table's records: each record's work is kept by its
identity (`Works.install`), a record that claims from a queue has the
queue's subdirectories made (and its next queue's) and this instance's
lock on the queue taken, an inactive record is logged with why, and the
directories are watched.  `reload` is HUP: reopen incoming.log and
logfiles/, reread the table (an invalid one is logged and the old one
stays in force), reread waitd.conf (the same), reset every back-off;
running handlers go on, tied to their record's work.  A reload that
changes a record's process-name warns how many handled files the new one
will handle again (the history is kept by process).  A table, or a
waitd.conf, that anyone may write is warned about at start and at each
HUP.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from waitd.config import table
from waitd.config.passdir import conf_path
from waitd.daemon import drain
from waitd.decide.facts import FileFact
from waitd.decide.scheduler import Mode
from waitd.journal.history import escape
from waitd.run import runner
from waitd.run.adopt import adopt
from waitd.run.executors import celery_problem
from waitd.spool import activation, claims, observe, queue
from waitd.spool.state import FileState

if TYPE_CHECKING:
    from waitd.daemon.loop import Daemon
    from waitd.run.work import Entry

log = logging.getLogger("waitd")


_ONLY_CHLD = frozenset({signal.SIGCHLD})


def act(d: Daemon) -> None:
    """Act on the signals caught since the last turn, each once."""
    pending = set()
    while d.signals:
        pending.add(d.signals.popleft())
    if pending <= _ONLY_CHLD:
        return  # nothing to act on (a handler's end wakes the loop; the reaping is the launcher's)
    if signal.SIGTERM in pending and d.mode is not Mode.STOPPING:
        log.info("waitd: TERM: stopping; %d handler(s) running", sum(1 for r in d.runs.live() if not r.stays))
        d.mode = Mode.STOPPING  # any -> STOPPING
        d.events.stopping()
        d.stop_at = time.monotonic() + d.settings.stop_timeout_s
        return
    if d.mode is Mode.STOPPING:
        return
    if signal.SIGHUP in pending:
        reload(d)
    if signal.SIGINT in pending and d.mode is Mode.ACTIVE:
        log.info(
            "waitd: INT: hibernating; no handler starts and nothing is removed "
            "(to resume: waitd -s resume or CONT; to stop: waitd -s stop or TERM)"
        )
        d.mode = Mode.HIBERNATING  # ACTIVE -> HIBERNATING
    if signal.SIGCONT in pending and d.mode is Mode.HIBERNATING and signal.SIGINT not in pending:
        log.info("waitd: CONT: leaving hibernation")
        d.mode = Mode.ACTIVE  # HIBERNATING -> ACTIVE
    if signal.SIGALRM in pending:
        d.observer.force_list = True
    if pending - {signal.SIGCHLD}:
        d.status_file.due = 0.0  # an operator's signal shows in the status at once


def exit_status(d: Daemon) -> int:
    """Say what is left undone at exit; the exit status."""
    d.write_status(force=True)
    lost = d.journal.close()  # what it could not write is logged, and lost
    d.events.close()
    left = drain.left(d.entries) if d.settings.once else 0
    if left:
        log.warning("waitd: --once: %d file(s) ready at start not started; left for the next run", left)
    log.info("waitd stopped")
    if lost:
        return 1
    inactive = any(e.problem for e in d.entries)
    return 1 if d.settings.once and (d.launcher.failures or inactive or left) else 0


def recover(d: Daemon) -> None:
    """At start: finish the runs a previous waitd left open (status 0, no
    end; a handler that still runs becomes its record's running handler),
    then sort out a queue's pending files."""
    adopt(d.launcher, d.history.open_runs(), d.works.owner_of, d.dispatch.of_event)
    busy = {path for run in d.runs.live() for path in run.job.paths}
    for entry in d.entries:
        if entry.record.options.claim and not entry.problem:
            for fact, directory in claims.recover(entry.files, d.history, d.settings.instance, busy):
                d.journal.removed(entry.record, fact, "handled with exit 0", directory)


def install(d: Daemon, records: Iterable[table.Record]) -> None:
    """Take a table (at start and on HUP); known work keeps its state."""
    passdir = d.settings.passdir
    path_env = d.env.get("PATH", os.defpath)
    entries = d.works.install(
        records,
        lambda record: _activate(d, record, path_env),
        lambda record: activation.matcher(record, passdir),
        lambda number: runner.last_letter(passdir, number),
        d.history,
    )
    for entry in entries:
        if entry.record.options.claim:
            entry.files.pending = claims.queue_of(entry.files).pending(d.settings.instance)
    d.instance_locks.keep_only(
        {os.path.dirname(e.record.directory) for e in entries if e.record.options.claim and not e.problem}
    )
    for entry in entries:
        if entry.problem:
            log.error(
                "record %d (%s:%d): inactive: %s",
                entry.number,
                d.settings.table_path,
                entry.record.line,
                entry.problem,
            )
    d.observer.force_list = True
    d.watcher.unwatch_all_but({e.record.directory for e in entries if not e.problem})
    for entry in entries:
        if not entry.problem and observe.open_dir(entry.files):
            d.observer.watch(entry)


def _activate(d: Daemon, record: table.Record, path_env: str) -> activation.Activation:
    """`activation.activate`; a record that claims from a queue has the
    queue's subdirectories made, those of its next queue too."""
    if record.options.claim:
        for root, instance in (
            (os.path.dirname(record.directory), d.settings.instance),
            (record.options.next, None),
        ):
            if root is None:
                continue
            try:
                queue.Queue(root).make(instance)
            except OSError as exc:
                return activation.Activation(None, claims.unmade(root, exc.strerror or str(exc)))
        problem = d.instance_locks.hold(os.path.dirname(record.directory))
        if problem is not None:
            return activation.Activation(None, problem)
    return activation.activate(record, d.settings.passdir, path_env)


def reload(d: Daemon) -> None:
    """HUP: reopen the log, reread the table, keep the old one if invalid."""
    d.events.reloading()
    d.reopen_log()
    d.launcher.logfiles_again()
    settings = d.settings
    records, errors = table.read(settings.table_path, settings.passdir, d.env, celery_problem(settings.passdir))
    warn_table_mode(settings)
    d.reloads += 1
    d.reload_errors = [str(e) for e in errors]
    if errors:
        for error in errors:
            log.error("%s", error)
        log.error(
            "%s: table not reloaded (%s); the previous table stays in force",
            settings.table_path,
            table.summary(errors),
        )
    else:
        _warn_process_changes(d, records)
        install(d, records)
        active = sum(1 for e in d.entries if not e.problem)
        log.info("waitd: HUP: table reloaded: %d records, %d active", len(d.entries), active)
    d.reload_errors += d.events.reloaded()  # waitd.conf
    d.dispatch.configure(d.events.conf.celery)
    if not settings.jobs_given:
        d.settings = replace(settings, jobs=d.events.conf.daemon.jobs)
    d.status_now = True  # `waitd -s reload` waits for it, written once the turn's lines are
    d.events.ready()  # systemd: the reload is over


def _warn_process_changes(d: Daemon, records: Iterable[table.Record]) -> None:
    """Warn when a record of the new table is one of the old but for its
    process-name: the history is kept by process, so every file the old
    one handled (and keep-after kept) is new to the new one."""
    old: dict[tuple[str, str], list[Entry]] = {}
    for e in d.entries:
        old.setdefault((e.record.directory, e.record.template), []).append(e)
    for record in records:
        same = old.get((record.directory, record.template), [])
        if not same or any(e.record.process == record.process for e in same):
            continue  # new, or kept (one of several records of those files: area=A,B)
        entry = same[0]
        again = sum(1 for fact in entry.files.cands.facts.values() if _again(d, entry.files, record, fact))
        if again:
            log.warning(
                "record %d: process-name changed from %s to %s: %d file(s) handled by the old one "
                "will be handled again by the new one (the history is kept by process)",
                record.number,
                escape(entry.record.process),
                escape(record.process),
                again,
            )


def _again(d: Daemon, files: FileState, record: table.Record, fact: FileFact) -> bool:
    """The old process handled this version, the new one did not."""
    path = files.path_of(fact.name)
    mine = d.history.latest(path, files.record.process)
    theirs = d.history.latest(path, record.process)
    handled = mine is not None and mine.same_version(fact) and mine.consumed
    return handled and (theirs is None or not theirs.same_version(fact))


def warn_table_mode(settings: Any) -> None:
    """Warn about a table, or a waitd.conf, that any user may change."""
    for path, what in (
        (settings.table_path, "what waitd runs"),
        (conf_path(settings.passdir), "where waitd writes and sends its events"),
    ):
        unsafe = activation.writable_by_others(path)
        if unsafe is not None:
            log.warning("%s: %s; anyone can change %s", path, unsafe, what)
