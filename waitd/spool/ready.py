# SPDX-License-Identifier: MIT
"""The jobs of a record ready now, and what its files wait for.

`take` gives up to n jobs of a record that may start now, oldest first,
and when the next one not ready yet will be: the files old enough
(`Candidates.take`), not handled yet (or due for their retry), and held
by none of the rules of `decide.readiness` (`held_until`: a companion, a
name left alone, a run on it, a name under way in pending, the --once
drain, a writer, a retry time, a companion not there yet); each file's
fields and key (pattern=, key=: a name they cannot take is left alone,
logged once).  Under claim=yes the files waiting in pending for their
retry come first, when due.  A record that handles groups gives the jobs
of its groups (`gather`), and what it tells of the groups that will not
run.  The one stat a file gets before its start is `observe.verify`'s.

`files` tells the status which files wait (they will run) and which are
held (they will not by themselves), and why, by the same rules;
`held_reasons` and `ready_at` tell the task API the same of one file.

This module starts nothing and writes nothing; the history is read
through its index (`History.latest`), the runs through `busy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from waitd.decide import readiness
from waitd.decide.facts import FileFact
from waitd.decide.outcome import Job, attempt_of
from waitd.formats.history_line import Event, Status, escape
from waitd.journal.history import History
from waitd.spool import observe
from waitd.spool.directory import Skip
from waitd.spool.gather import Held, Look, Notice, Open
from waitd.spool.state import FileState

SHOWN = 10  # file names listed in the status; the rest are counted
LISTED = 100  # waiting and held files named in the status document


def _latest(st: FileState, history: History) -> Callable[[FileFact], Event | None]:
    """A file's latest event for the record's process, if it is about this version."""
    process = st.record.process
    path_of = st.path_of

    def latest(fact: FileFact) -> Event | None:
        event = history.latest(path_of(fact.name), process)
        return event if event is not None and event.same_version(fact) else None

    return latest


def _holds(st: FileState, busy: Callable[[str], bool]) -> readiness.Holds:
    """What holds the record's files back now (`busy`: a run of its process
    works on the path)."""
    pending = st.pending
    directory = st.path_of("")  # a name's path: this and the name (`path_of`, without a call)

    def busy_name(name: str) -> bool:
        if busy(directory + name):
            return True  # running, or ended and its end not recorded yet
        # claim=yes: its name is under way in pending (a claim never replaces)
        return pending is not None and (name in st.retries or busy(f"{pending}/{name}"))

    return readiness.Holds(
        st.companions,
        st.left_alone,
        st.writing,
        st.drain,
        busy_name,
        (lambda name: observe.companion(st, name)) if st.record.options.done is not None else None,
        int(st.record.wait_s * 1e9),
        st.paused,
    )


def take(
    st: FileState, n: int, history: History, now_ns: int, busy: Callable[[str], bool]
) -> tuple[list[Job], int | None, list[Notice]]:
    """Up to `n` jobs ready now, oldest first; when the next one not ready
    yet will be; what to tell of groups that will not run."""
    if st.spool is None or n <= 0:
        return [], None, []
    holds = _holds(st, busy)
    if st.groups is not None:
        latest = _latest(st, history)
        order_ns, wait_ns = st.cands.order_ns, holds.wait_ns
        look = Look(
            st.record,
            st.cands.facts,
            st.path_of,
            latest,
            lambda name: busy(st.path_of(name)),
            lambda fact: max(order_ns(fact) + wait_ns, readiness.member_held(holds, fact) or 0),
            st.fields,
        )
        return st.groups.take(n, look, now_ns)
    due = _due_retries(st, history, now_ns, busy) if st.retries else []
    if len(due) >= n:
        return due[:n], None, []
    # Each file's latest event about its version, looked up once for the
    # three questions asked of it (consumed? held? which attempt?): this
    # is a hot path (a turn of a drain asks them of two files): `_latest`
    # inline, two calls fewer a look-up.
    events: dict[str, Event | None] = {}
    of_path, process, directory = history.latest, st.record.process, st.path_of("")

    def event_of(fact: FileFact) -> Event | None:
        name = fact.name
        if name in events:
            return events[name]
        event = of_path(directory + name, process)
        if event is not None and not event.same_version(fact):
            event = None
        events[name] = event
        return event

    def consumed(fact: FileFact) -> bool:
        event = event_of(fact)
        return event is not None and event.consumed and event.retry_at is None

    def held(fact: FileFact) -> int | None:
        return readiness.held_until(holds, fact, event_of(fact))

    facts, due_ns = st.cands.take(n - len(due), now_ns, holds.wait_ns, consumed, held)
    jobs: list[Job] = []
    if facts:
        identity, judge = st.identity, st.judge
        for fact in facts:  # a file's job, with what its jobs share looked up once
            name = fact.name
            judged = judge(name)  # None: pattern= or key= cannot take it (left alone, logged once)
            if judged is not None:
                fields, key = judged
                attempt = attempt_of(events.get(name))
                jobs.append(Job(identity, process, (fact,), (directory + name,), key, attempt, fields))
    if st.retries:
        waits = [at for name, (_, at) in st.retries.items() if name not in st.paused]
        if waits:
            later = int(min(waits) * 1e9)
            due_ns = later if due_ns is None else min(due_ns, later)
    return due + jobs, due_ns, []


def _due_retries(st: FileState, history: History, now_ns: int, busy: Callable[[str], bool]) -> list[Job]:
    """claim=yes: the jobs of files waiting in pending whose retry is due."""
    assert st.pending is not None
    jobs = []
    for name, (fact, at) in sorted(st.retries.items(), key=lambda item: item[1][1]):
        path = f"{st.pending}/{name}"
        if at * 1e9 > now_ns or busy(path) or name in st.paused:
            continue
        event = history.latest(path, st.record.process)
        attempt = attempt_of(event if event is not None and event.same_version(fact) else None)
        judged = st.judge(name)  # its key and fields hold for its retry too (key={rb_number})
        fields, key = judged if judged is not None else ({}, None)
        jobs.append(Job(st.identity, st.record.process, (fact,), (path,), key, attempt, fields))
    return jobs


# -- the status ------------------------------------------------------------------


@dataclass(slots=True)
class Files:
    """What the status says of a record's files."""

    waiting: int  # not handled yet, and will run (once old enough, or its group complete)
    oldest_mtime: float | None  # of those waiting
    held: list[tuple[str, str, float | None]]  # name, why it will not run by itself, until when
    held_count: int
    waiting_files: list[tuple[str, float]]  # the first LISTED waiting: name, when old enough
    gathering: list[Open]  # groups still gathering, by deadline
    retrying: list[tuple[str, float]]  # name, when
    failed: list[str]  # final failures, kept: keep-after never removes them
    failed_count: int
    unremovable: list[str]
    unremovable_count: int


def files(st: FileState, history: History, now_ns: int) -> Files:
    """What the status says of the files: waiting (they will run), held
    (they will not by themselves: why, and until when), the groups
    gathering, retrying, failed."""
    of_groups: dict[str, Held] = {}
    gathering: list[Open] = []
    if st.groups is not None:
        look = Look(st.record, st.cands.facts, st.path_of, _latest(st, history))
        of_groups, gathering = st.groups.held(look, now_ns)
    waiting, held, retrying, failed = _sort_out(st, history, of_groups)
    retrying += [(name, at) for name, (_, at) in st.retries.items()]  # claim=yes: waiting in pending
    stuck = sorted(st.unremovable.items())
    oldest = min((f.mtime_ns for f in waiting), default=None)
    return Files(
        waiting=len(waiting),
        oldest_mtime=None if oldest is None else oldest / 1e9,
        held=sorted(held)[:LISTED],
        held_count=len(held),
        waiting_files=[(f.name, ready_at(st, f)) for f in st.cands.oldest(LISTED, waiting)],
        gathering=gathering,
        retrying=sorted(retrying, key=lambda item: item[1]),
        failed=sorted(failed)[:SHOWN],
        failed_count=len(failed),
        unremovable=[f"{escape(name)} ({why})" for name, (_, why) in stuck[:SHOWN]],
        unremovable_count=len(stuck),
    )


def _sort_out(
    st: FileState, history: History, of_groups: dict[str, Held]
) -> tuple[list[FileFact], list[tuple[str, str, float | None]], list[tuple[str, float]], list[str]]:
    """The files not done: waiting, held (name, why, until), retrying
    (name, when), failed.  Every one is looked at (a big backlog:
    thousands, at each status): the history's index is read inline, and
    the reasons a file is held are asked only when one of them may apply."""
    waiting: list[FileFact] = []
    held: list[tuple[str, str, float | None]] = []
    retrying: list[tuple[str, float]] = []
    failed: list[str] = []
    of_path, process, directory = history.latest, st.record.process, st.path_of("")
    companions = st.companions
    holding = bool(st.paused or st.left_alone or of_groups or st.record.options.done is not None)
    for fact in not_done(st):
        name = fact.name
        if name in companions:
            continue
        event = of_path(directory + name, process)
        if event is None or not event.same_version(fact) or not event.consumed:
            why, until_ns = _held_why(st, name, of_groups) if holding else (None, None)
            if why is None:
                waiting.append(fact)
            else:
                held.append((name, why, None if until_ns is None else until_ns / 1e9))
        elif event.retry_at is not None:
            retrying.append((name, event.retry_at))
        elif event.status is not Status.STARTED and not event.succeeded:
            failed.append(name)
    return waiting, held, retrying, failed


def not_done(st: FileState) -> Iterator[FileFact]:
    """The record's files but those handled with exit 0, this very version
    (most of a big spool that keeps its files): no look at their history.
    One pass over the files, no set of their names nor a list of them (4
    and 0.8 MB for 100,000 files, at the peak of a start's memory: issue
    21); `done` holds a name's current fact, the very one
    (`observe._take_in`, `FileState.ran`), or none."""
    facts, done = st.cands.facts, st.done
    if not done:
        return iter(facts.values())
    return (fact for name, fact in facts.items() if name not in done)


def held_reasons(st: FileState, history: History, now_ns: int) -> Callable[[str], tuple[str | None, float | None]]:
    """Why each file not handled yet will not run by itself, and until
    when (epoch seconds); (None, None) for one that will (the same rules
    as `files`, for the task API)."""
    of_groups: dict[str, Held] = {}
    if st.groups is not None:
        of_groups, _ = st.groups.held(Look(st.record, st.cands.facts, st.path_of, _latest(st, history)), now_ns)

    def why(name: str) -> tuple[str | None, float | None]:
        reason, until_ns = _held_why(st, name, of_groups)
        return reason, None if until_ns is None else until_ns / 1e9

    return why


def ready_at(st: FileState, fact: FileFact) -> float:
    """When a waiting file reaches its wait age (epoch seconds)."""
    return (st.cands.order_ns(fact) + int(st.record.wait_s * 1e9)) / 1e9


def _held_why(st: FileState, name: str, of_groups: dict[str, Held]) -> tuple[str | None, int | None]:
    """Why a file not handled yet will not run by itself, and until when;
    (None, None) when it will run."""
    if name in st.paused:
        return "paused (waitd -s pause)", None
    if name in st.left_alone:
        return st.left_alone[name], None
    if name in of_groups:
        return of_groups[name].why, of_groups[name].until_ns
    if st.record.options.done is not None and st.spool is not None:
        companion, why = readiness.companion_name(st.record.options, name, st.fields(name))
        if why is not None:
            return why, None
        try:
            st.spool.stat(companion or "")
        except (OSError, Skip):
            return f"its companion {companion} is not there yet", None
    return None, None


def incomplete_groups(st: FileState) -> dict[str, list[str]] | None:
    """Groups that will not run (a critical member missed their
    timeliness), with what they miss; None for a record without groups."""
    return dict(st.groups.incomplete) if st.groups is not None else None
