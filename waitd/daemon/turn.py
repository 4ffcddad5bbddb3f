# SPDX-License-Identifier: MIT
"""The parts of a turn of the loop: observe, the scheduler's situation, apply.

`Observer.observe` looks at the records' directories: what inotify named
(read when the loop's wait saw its descriptor ready) is stat'ed, and at a
poll (or when asked: ALRM, an overflow, a directory gone) every directory
is listed (a directory changed since its last
listing; with no inotify watch, or a new one, its known files are stat'ed
too; under a watch only the names it did not know, and, a slice a turn,
the loop turning again at once until it is done, the known files whose
changes the watch may not see: `observe.restat_some`); the history's
chores of a poll (the events a full disk held back, the compaction) are
done first.  When the loop woke for inotify alone and nothing else is
due, `Observer.quiet` takes its news before the turn: news that touch no
file of a record (a name being written before its rename into a
template's, another template's) cost no turn.

`situation` turns the daemon's state into what `scheduler.plan` takes:
each active record as a `Seat` (its limits, back-off, executor, out-limit,
its ready jobs when asked, and its removal facts), the runs, `--jobs`, the
holds.  A record's trouble while its jobs are looked at is logged once and
skips that record.  A quiet turn (a drain's) needs none of it: `plans`
asks `decide.quiet` with each record's `taker` instead.

`apply` carries out a plan, in its order: signals (logging the stop's),
the out-limit looks, the starts, the publications; then the ends of the
runs reaped (their writing overlaps the new runs; keep-after counts them
as written already, and removes them in the same turn), the moves of their
queue files, the retirement of the ended runs the plan saw, the
removals; then it tells the events what was removed and what became of
groups.

Nothing here decides: the rules are `decide`'s, taken by the scheduler.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from waitd.config import table
from waitd.decide import handoff, removal
from waitd.decide.facts import FileFact
from waitd.decide.outcome import Job, Why
from waitd.decide.removal import Remove, Sweep
from waitd.decide.scheduler import Candidate, Mode, Plan, Seat, Situation
from waitd.run import publish
from waitd.run.work import Entry
from waitd.spool import claims, observe, ready, sweep
from waitd.spool.directory import Listings
from waitd.spool.gather import Notice

if TYPE_CHECKING:
    from waitd.daemon.loop import Daemon

log = logging.getLogger("waitd")


# -- observe ---------------------------------------------------------------------


class Observer:
    """What the loop sees of the directories, each turn."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.force_list = True  # list every directory at the next turn
        self.notified = True  # inotify has news to read (the loop's wait saw its descriptor ready)

    def observe(self, now: float, now_ns: int, poll: bool) -> bool:
        """Take inotify's news, and list at a poll; True when it listed."""
        d = self.d
        self._changes(now_ns)
        if poll:
            d.next_poll = now + d.settings.interval_s
            if not d.journal.retry() and not d.compact_at_start:
                # The compaction at start waits for the end of the first pass.
                if d.history.needs_compaction() and not d.runs.live():
                    self.compact()
        listing = poll or self.force_list
        self.force_list = False
        for entry in d.entries:
            if entry.problem:
                continue
            try:
                if entry.files.restat:
                    observe.restat_some(entry.files, d.history, now_ns)
                if listing:
                    self._list(entry, now_ns)
            except Exception as exc:
                # One record's trouble must not stop the others.
                d.record_errors.note(exc, f"record {entry.number}: its pass")
            if entry.files.restat:
                d.again = True  # what a listing left to stat: a slice at the next turn, at once
        return listing

    def compact(self, listed: bool = False) -> None:
        """Compact the history; `listed`: the files gone were dropped
        already (at start: as the history was read), so the directories
        are not listed again for it."""
        before = self.d.history.lines
        try:
            dropped = self.d.history.compact(None if listed else Listings().exists)
        except Exception as exc:
            log.error("%s; compaction skipped", exc)
            return
        if before != self.d.history.lines:
            log.info(
                "%s: compacted from %d to %d lines (%d keys of files no longer there dropped)",
                self.d.history.path,
                before,
                self.d.history.lines,
                dropped,
            )

    def _list(self, entry: Entry, now_ns: int) -> None:
        """List a directory (`observe.refresh`): its watch is added first,
        so that a change after the listing is reported, and a listing
        stats the files it knew only where no watch was there before it."""
        d = self.d
        directory = entry.record.directory
        watched = d.watcher.watching(directory)
        if observe.open_dir(entry.files):
            self.watch(entry)
        observe.refresh(entry.files, d.history, now_ns, restat=not (watched and d.watcher.watching(directory)))
        self.watch(entry)

    def watch(self, entry: Entry) -> None:
        spool = entry.files.spool
        if spool is not None and entry.files.dir_note is None:
            # Again when the directory was replaced: the old watch would go
            # on reporting the old one.
            self.d.watcher.watch(entry.record.directory, (spool.identity.dev, spool.identity.ino))

    def quiet(self, due_in: float) -> bool:
        """The loop woke for inotify alone (`due_in`: its wait from now; 0:
        something else is due): its news are taken at once; True when they
        touch no file of a record (a temporary name being written, a name
        no template matches), so that the loop need not turn for them."""
        if due_in <= 0.0:
            return False
        self.notified = False
        return not self._take_news(time.time_ns())

    def _changes(self, now_ns: int) -> None:
        """Apply what inotify reported: stat the names it named."""
        if self.notified:
            self._take_news(now_ns)

    def _take_news(self, now_ns: int) -> bool:
        """Read inotify and stat the names it named; True when its news
        touch a record (a name of its files, a directory gone, an overflow)."""
        d = self.d
        changes = d.watcher.read()
        touched = changes.overflow or bool(changes.gone)
        if changes.overflow:
            log.warning("waitd: inotify queue overflowed; listing every directory")
            self.force_list = True
        for entry in d.entries:
            directory = entry.record.directory
            if changes.overflow or directory in changes.gone:
                # Events were lost: the listing stats every file again.
                entry.files.listed_mtime_ns = None
                self.force_list = True
            names = changes.names.get(directory)
            if names and observe.touched(entry.files, d.history, names, now_ns):
                touched = True
        return touched


# -- the situation ---------------------------------------------------------------


def situation(d: Daemon, now: float, now_ns: int, listing: bool) -> Situation:
    """What the scheduler looks at now."""
    # The journal refused a write, or holds one: nothing starts before the
    # next poll writes what it holds.
    held_until = 0.0 if d.journal.may_start else d.next_poll
    d.news = []
    seats = [_seat(d, e, now, now_ns, listing) for e in seated(d)]
    return Situation(
        d.mode,
        now_ns,
        seats,
        d.runs.scheduled(d.works.number_of),
        d.settings.jobs,
        held_until,
        d.stop_at if d.mode is Mode.STOPPING else None,
        d.settings.stop_timeout_s,
    )


def seated(d: Daemon) -> list[Entry]:
    """The records a plan looks at: those with no problem and a spool."""
    return [e for e in d.entries if not e.problem and e.files.spool is not None]


def taker(d: Daemon, entry: Entry, now: float, now_ns: int) -> Callable[[int], tuple[list[Candidate], float | None]]:
    """A record's `Seat.ready`: up to n of its jobs ready now, as candidates,
    and when (monotonic) the next will be; what it tells of groups goes to
    `d.news`."""
    busy = d.runs.busy_for(entry.record.process)

    def take(n: int) -> tuple[list[Candidate], float | None]:
        try:
            jobs, due_ns, notices = ready.take(entry.files, n, d.history, now_ns, busy)
        except Exception as exc:
            d.record_errors.note(exc, f"record {entry.number}: choosing its next file")
            return [], None
        if notices:
            d.news += [(entry, n) for n in notices]
        candidates = [Candidate(entry.number, job.claim, job.key, job, _names(entry, job)) for job in jobs]
        return candidates, None if due_ns is None else now + (due_ns - now_ns) / 1e9

    return take


def _seat(d: Daemon, entry: Entry, now: float, now_ns: int, listing: bool) -> Seat:
    record, files = entry.record, entry.files
    options = record.options
    out = None
    if options.claim and options.out_limit is not None and options.next is not None:
        out = handoff.OutLimit(
            options.out_limit,
            options.out_wait_s,
            d.outflow.last(options.next),
            claims.Outflow.count(options.next),
            options.next,
        )
    publish_only = record.publish_only
    return Seat(
        entry.number,
        options.jobs,
        taker(d, entry, now, now_ns),
        options.key is not None,
        publish_only,
        entry.tally.backoff_until,
        publish_only or d.dispatch.of(options.run).ready(),
        out,
        lambda name: d.runs.working(files.path_of(name)),
        _sweep(d, entry, listing) if d.mode is Mode.ACTIVE and sweeping(entry, listing) else None,
    )


def sweeping(entry: Entry, listing: bool) -> bool:
    """Whether a removal rule may remove any file of the record now: expiry
    and retention at a listing, keep-after when more files are done than
    it keeps (a cheap test a turn, before the facts are gathered)."""
    keep = entry.record.keep
    return listing or (0 <= keep < len(entry.files.done))


def _names(entry: Entry, job: Job) -> tuple[str, ...]:
    """The names of a job's files in the record's own directory."""
    facts = job.facts
    if len(facts) == 1 and job.paths[0] == entry.files.path_of(facts[0].name):
        return (facts[0].name,)  # the common case, quickly
    directory = entry.record.directory
    return tuple(f.name for f, p in zip(job.facts, job.paths, strict=True) if os.path.dirname(p) == directory)


def _sweep(d: Daemon, entry: Entry, listing: bool) -> Sweep:
    """What the removal rules look at for a record this turn."""
    record, files = entry.record, entry.files
    history = d.history

    def latest_group(fact: FileFact) -> str | None:
        event = history.latest(files.path_of(fact.name), record.process)
        return event.group if event is not None and event.same_version(fact) else None

    def handled(fact: FileFact) -> bool:
        event = history.latest(files.path_of(fact.name), record.process)
        return event is not None and event.same_version(fact) and event.consumed

    errors = tmp = None
    if listing and record.options.claim:
        errors, tmp = claims.listing(claims.queue_of(files))
    return Sweep(
        record.keep,
        files.done.values(),
        latest_group if files.groups is not None else None,
        lambda fact: all_done(d, entry, fact),
        record.too_old_h,
        files.cands.facts.values() if listing else (),
        handled,
        errors,
        tmp,
        claims.ours(files.match),
        lambda k: files.done_order.oldest(k, files.done),
    )


def all_done(d: Daemon, entry: Entry, fact: FileFact) -> bool:
    """`removal.done_by_all` of a file, from the latest event of each record
    of its directory that matches it (inactive records too): an end reaped
    this turn counts, as `apply` writes it before the removals."""
    path = entry.files.path_of(fact.name)
    latest = [
        d.launcher.pending_end(path, other.record.process) or d.history.latest(path, other.record.process)
        for other in d.works.sharing(entry.record.directory)
        if other.files.match(fact.name)
    ]
    return removal.done_by_all(fact, latest)


# -- apply -----------------------------------------------------------------------


def apply(d: Daemon, plan: Plan, now_ns: int) -> None:
    """Carry out a plan."""
    if plan.signal:  # (a drain's turn has none: no call for an empty part)
        _signal(d, plan)
    by_number = d.works.by_number
    for queue, look, files in plan.looked:
        first = next((e for e in d.entries if e.record.options.next == queue), None)
        if first is not None and first.record.options.out_limit is not None:
            d.outflow.looked(first.number, queue, look, files, first.record.options.out_limit)
    starts = [(by_number[c.record], c.ref) for c in plan.start if isinstance(c.ref, Job)]
    if starts:
        d.launcher.start(starts, now_ns)
    if plan.publish:
        _publish(d, plan.publish, by_number, now_ns)
    d.launcher.finish()
    d.journal.flush()  # the pids of this turn's starts, if no end took them along
    for move in plan.move:
        run = d.runs.get(move.run_id)
        if run is not None and run.work is not None:
            if d.launcher.dispose(run, move.disposal):
                tell_removed(d, run.work.files.record, run.job.fact, "handled with exit 0", os.path.dirname(run.path))
            d.again = True  # a name in pending is free: a file of that name in incoming may be claimed now
    if plan.ended:
        d.launcher.retire()
    if plan.remove:
        _remove(d, plan.remove, by_number, now_ns)
    for entry, notice in d.news:
        _tell_group(d, entry, notice)
    d.news = []


def _signal(d: Daemon, plan: Plan) -> None:
    stop = sum(1 for s in plan.signal if s.why is Why.STOP)
    if stop:
        log.warning("waitd: stop timeout reached; sending TERM to %d handler(s)", stop)
    ended = {r.run_id for r in d.runs.ended()}
    kills = [s for s in plan.signal if s.signum == signal.SIGKILL and s.run_id not in ended]
    if kills and d.mode is Mode.STOPPING:
        log.warning("waitd: sending KILL to %d handler(s)", len(kills))
    for sig in plan.signal:
        run = d.runs.get(sig.run_id)
        if run is not None:
            d.launcher.signal(run, sig.signum, sig.why, sig.grace_s)


def _publish(d: Daemon, jobs: Sequence[Candidate], by_number: dict[int, Entry], now_ns: int) -> None:
    of_record: dict[int, list[Job]] = {}
    for c in jobs:
        if isinstance(c.ref, Job):
            of_record.setdefault(c.record, []).append(c.ref)
    for number, mine in of_record.items():
        if not publish.publish(by_number[number], mine, d.journal, now_ns):
            return  # the journal refused them: it holds every start and publication until the next poll


def _remove(d: Daemon, removals: Sequence[Remove], by_number: dict[int, Entry], now_ns: int) -> None:
    for r in removals:
        if r.kept and not d.journal.may_start:
            continue  # its end (this turn's) may be held, not on disk: it waits for the next plan
        entry = by_number[r.record]
        if r.directory is None:
            done = sweep.remove(entry.files, d.history, r.fact, r.why, now_ns)
        else:
            done = sweep.remove_queued(entry.number, r.directory, r.fact, r.why)
        if done is not None:
            entry.tally.counters.removed += 1
            tell_removed(d, entry.record, done.fact, done.why, done.directory)


def tell_removed(d: Daemon, record: table.Record, fact: FileFact, why: str, directory: str | None) -> None:
    """A file was removed: an event (`directory`: not the record's own)."""
    d.journal.removed(record, fact, why, directory)


def _tell_group(d: Daemon, entry: Entry, notice: Notice) -> None:
    d.journal.group(entry.record, notice.gid, notice.state, notice.names, notice.missing)
