# SPDX-License-Identifier: MIT
"""Observing a record's directory: open, list, stat, and what each says.

The I/O of a record's files, on its `FileState`: `open_dir` opens the
directory (again, when it was replaced; logged once when it is gone);
`refresh` lists it when it changed since the last listing (its mtime:
an unchanged directory costs a stat), or, with `restat` (no watch), stats
the known files when it did not (a file rewritten in place changes no
name); under an inotify watch a listing stats only the names it did not
know and forgets those gone (the kernel reports the changes of the
others), and leaves to `restat_some`, a slice a turn (RESTAT_SLICE), only
the known files whose changes a watch may not see (`decide.watching`: a
network filesystem, a symlink); `touched` stats the names inotify
reported; `verify` stats a job's files once more just before its start
(a file that vanished is forgotten and logged, one that changed is aged
again: the start is dropped); `companion` stats the companion of a file
(done=).  Each new or changed file is taken in: whether its version was
handled already (the history), whether the --once drain still holds it,
its companion, its group (`gather`), and whether pattern= and key= can
take it (if not, it is left alone, logged once); a file whose mtime lies
in the future is noted.

Not here: which files are ready (`ready`), the removals (`sweep`), the
rules (`decide`).  Every problem is logged with the record number first
and never raised: a strange file is skipped and logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Container, Iterable

from waitd.config import table
from waitd.decide.facts import FileFact
from waitd.decide.outcome import Job
from waitd.decide.readiness import companion_name
from waitd.decide.watching import restat_after_listing
from waitd.journal.history import History, escape
from waitd.spool.directory import Skip, Spool
from waitd.spool.gather import Gathering
from waitd.spool.state import FileState
from waitd.spool.watch import CLOSED, OPENED

log = logging.getLogger("waitd")

# A directory whose mtime is this close to the moment it was listed may have
# changed again within the same timestamp tick: list it again next time.
GRANULARITY_NS = 2_000_000_000
FUTURE_NOTE_NS = 5_000_000_000
RESTAT_SLICE = 256  # known files stat'ed again in a turn, after a listing under a watch (about 0.5 ms)


def open_dir(st: FileState) -> bool:
    """Open the directory if needed; False (logged once) if it is gone."""
    if st.spool is not None:
        replaced = st.spool.replaced()
        if replaced is None:
            _note_dir(st, "directory is gone; waiting for it to come back")
            st.cands.replace_all([], time.time_ns())
            st.done.clear()
            return False
        if not replaced:
            return True
        log.warning("record %d: %s was replaced by another directory; following it", st.number, st.record.directory)
        st.spool.close()
        st.spool = None
    try:
        st.spool = Spool(st.record.directory)
    except OSError as exc:
        _note_dir(st, f"cannot open directory: {exc.strerror}")
        return False
    if st.dir_note is not None:
        log.info("record %d: %s is back", st.number, st.record.directory)
    st.dir_note = None
    st.listed_mtime_ns = None
    return True


def _note_dir(st: FileState, what: str) -> None:
    if st.dir_note != what:
        log.error("record %d: %s: %s", st.number, st.record.directory, what)
        st.dir_note = what


def retire(st: FileState) -> None:
    """The record left the table: let go of its directory and files."""
    if st.spool is not None:
        st.spool.close()
        st.spool = None
    st.clear()


def reconfigure(st: FileState, record: table.Record, history: History) -> None:
    """Take the reloaded table's record of the same work: when it groups
    differently, its files are filed into groups anew."""
    grouping = record.options.group != st.record.options.group or record.geo is not st.record.geo
    st.record = record
    if grouping:
        spec = record.options.group
        st.groups = Gathering.of(spec, record.telem, record.geo) if spec is not None else None
        st.left_alone.clear()
        st.told.clear()
        for fact in list(st.cands.facts.values()):
            _file(st, fact)


def refresh(st: FileState, history: History, now_ns: int, restat: bool = False) -> bool:
    """List the directory if it changed since the last listing; with
    `restat`, stat the known files even when it did not (without inotify,
    only a stat sees a file rewritten in place).  Without `restat` (a
    watch, there before the last listing), a listing after the first
    stats only the names it did not know (`_relist`)."""
    if not open_dir(st):
        return False
    assert st.spool is not None
    try:
        mtime = st.spool.mtime_ns()
    except OSError as exc:
        _note_dir(st, f"cannot stat directory: {exc.strerror}")
        return False
    if mtime == st.listed_mtime_ns and st.listed_at_ns - mtime > GRANULARITY_NS:
        if restat:
            _restat_known(st, history, now_ns)
        return False
    listed_at = time.time_ns()
    relist = not restat and st.listed_mtime_ns is not None and bool(st.cands.facts)
    if not (_relist if relist else _take_listing)(st, history, now_ns):
        return False
    st.listed_mtime_ns = mtime
    st.listed_at_ns = listed_at
    return True


def _names(st: FileState) -> list[str] | None:
    """The names of the directory that match (None, logged once, if it
    cannot be listed)."""
    assert st.spool is not None
    try:
        return st.spool.names(st.match, st.cands.facts)
    except OSError as exc:
        _note_dir(st, f"cannot list directory: {exc.strerror}")
        return None


def _take_listing(st: FileState, history: History, now_ns: int) -> bool:
    """A listing with a stat of every name; False if it cannot be listed."""
    assert st.spool is not None
    names = _names(st)
    if names is None:
        return False
    st.restat.clear()
    facts, skipped = st.spool.stat_all(names)
    # The names noted that are still here (the others are gone; a name
    # noted again below is listed): what needs the names of the listing,
    # let go of before the facts are taken in (100,000 at start).
    if st.noted:  # one pass over the names, not a search of the list for each name noted
        here = {n for n in names if n in st.noted}
        st.noted = {n: r for n, r in st.noted.items() if n in here}
    del names
    for name, reason in skipped.items():
        st.note(name, reason)
    if st.noted:
        for name in facts:
            st.noted.pop(name, None)
    if not st.cands.facts:
        # The first listing (100,000 files at start): the files taken in
        # first, so that those handled already, this very version, never
        # enter the line (`Candidates.replace_all`'s `done`): its first
        # plan does not step over them one by one.  The dict of the facts
        # becomes the line's own.
        if not _take_first(st, history, facts.values(), now_ns):
            _take_all(st, history, facts.values(), now_ns, history.names_in(st.path_of(""), st.record.process))
        st.cands.replace_all(facts, now_ns, st.done)
    else:
        changed, gone = st.cands.replace_all(facts, now_ns)
        for name in gone:
            st.forget(name)
        _take_all(st, history, changed, now_ns)
    return True


def _relist(st: FileState, history: History, now_ns: int) -> bool:
    """A listing under a watch: the new names stat'ed, the gone ones
    forgotten, and left to `restat_some` only the known ones whose changes
    the watch may not report (`watching.restat_after_listing`); False if it
    cannot be listed.  The names are compared as sets, in C, and only the
    new ones matched: no loop of Python over 2,000 kept files a poll."""
    assert st.spool is not None
    try:
        listed = st.spool.listing()
    except OSError as exc:
        _note_dir(st, f"cannot list directory: {exc.strerror}")
        return False
    known = st.cands.facts
    for name in known.keys() - listed:
        st.forget(name)
    st.restat = restat_after_listing(listed, known, st.cands.links, st.spool.sees_all)
    match = st.match
    _stat_in(st, history, [n for n in listed - known.keys() if match(n)], now_ns)
    if st.noted:
        st.noted = {n: r for n, r in st.noted.items() if n in st.cands.facts or (n in listed and match(n))}
    return True


def restat_some(st: FileState, history: History, now_ns: int) -> bool:
    """Stat the next RESTAT_SLICE known names a listing left; True while
    some are left."""
    batch = st.restat[-RESTAT_SLICE:]
    del st.restat[-RESTAT_SLICE:]
    if st.spool is not None:
        _stat_in(st, history, batch, now_ns)
    return bool(st.restat)


def _stat_in(st: FileState, history: History, names: list[str], now_ns: int) -> None:
    """Stat names and take what each says: a new version, unusable
    (noted, and forgotten), or gone (forgotten)."""
    assert st.spool is not None
    facts, skipped = st.spool.stat_all(names)
    for name, reason in skipped.items():
        st.note(name, reason)
    for name in names:
        if name not in facts and name in st.cands.facts:
            st.forget(name)
    for fact in facts.values():
        st.noted.pop(fact.name, None)
        if st.cands.update(fact, now_ns):
            _take_in(st, history, fact, now_ns)


def _restat_known(st: FileState, history: History, now_ns: int) -> None:
    known = list(st.cands.facts)
    facts, skipped = st.spool.stat_all(known) if st.spool is not None else ({}, {})
    for name, reason in skipped.items():
        st.note(name, reason)
    for name in known:
        if name not in facts:
            st.forget(name)
    for fact in facts.values():
        if st.cands.update(fact, now_ns):
            _take_in(st, history, fact, now_ns)


def touched(st: FileState, history: History, names: dict[str, str | None], now_ns: int) -> bool:
    """Stat the names inotify reported, instead of listing everything;
    True when one of them is a name of the record's files, or the
    companion (done=) of one, which the template need not match."""
    if st.spool is None:
        return False
    mine = False
    for name, state in names.items():
        if not st.match(name):
            mine = mine or name in st.companions  # its file's readiness looks at it again
            continue
        mine = True
        if state == OPENED:
            st.writing.add(name)
        elif state == CLOSED:
            st.writing.discard(name)
        look_again(st, history, name, now_ns)
    return mine


def look_again(st: FileState, history: History, name: str, now_ns: int) -> None:
    """Stat one name and take what it says: a new version, or gone."""
    fact = _stat(st, name)
    if fact is None:
        st.forget(name)
    elif st.cands.update(fact, now_ns):
        _take_in(st, history, fact, now_ns)


def verify(st: FileState, history: History, job: Job, now_ns: int) -> bool:
    """Stat a job's file once more before its start: True if it is as the
    job saw it; else it vanished (forgotten, logged) or changed (aged
    again), and the job does not start.  A group's members and a retry
    waiting in pending were seen by their group and their claim."""
    fact, path = job.facts[0], job.paths[0]
    if job.group is not None or len(job.facts) != 1 or path != st.path_of(fact.name) or st.spool is None:
        return True
    fresh = _stat(st, fact.name)
    if fresh is None:
        log.info("record %d: %s vanished before its run", st.number, escape(path))
        st.forget(fact.name)
        return False
    if fresh != fact:
        # Still being written (or touched): order and age it again.
        if st.cands.update(fresh, now_ns):
            _take_in(st, history, fresh, now_ns)
        return False
    return True


def companion(st: FileState, name: str) -> FileFact | None:
    """The companion of a file (done=), if it is there (a stat); a file
    whose companion cannot be named is left alone (logged once)."""
    other, why = companion_name(st.record.options, name, st.fields(name))
    if why is not None:
        st.leave_alone(name, why)
    if other is None or st.spool is None:
        return None
    try:
        fact = st.spool.stat(other)
    except (OSError, Skip):
        return None
    st.companions[other] = name
    return fact


def _stat(st: FileState, name: str) -> FileFact | None:
    """Stat one name: `Spool.stat_all` of one, without its dicts."""
    assert st.spool is not None
    try:
        fact = st.spool.stat(name)
    except FileNotFoundError:
        return None
    except Skip as why:
        st.note(name, str(why))
        return None
    except OSError as exc:
        st.note(name, f"cannot stat: {exc.strerror}")
        return None
    if st.noted:
        st.noted.pop(name, None)
    return fact


def _take_in(st: FileState, history: History, fact: FileFact, now_ns: int) -> None:
    """A new or changed file: `_take_all` of one."""
    _take_all(st, history, (fact,), now_ns)


def _take_first(st: FileState, history: History, facts: Collection[FileFact], now_ns: int) -> bool:
    """`_take_all` of a first listing, for a record whose files ask only
    their history and their mtime (no pattern=, key=, done=, groups, no
    --once drain, nothing left alone or done yet): the history is asked
    of the files it knows only, the mtimes in the future are picked in
    one pass (100,000 files at start: no loop of Python a file).  False,
    and nothing done, for any other record: `_take_all` takes it."""
    options = st.record.options
    if st.left_alone or st.done or st.drain is not None or st.groups is not None:
        return False
    if options.done is not None or options.pattern is not None or options.key is not None:
        return False
    directory, process = st.path_of(""), st.record.process
    known = history.names_in(directory, process)
    for fact in [f for f in facts if f.name in known] if known else ():
        if history.handled(directory + fact.name, process, fact):
            st.set_done(fact)
    future_ns = now_ns + FUTURE_NOTE_NS
    for fact in [f for f in facts if f.mtime_ns > future_ns]:
        st.note(fact.name, "mtime is in the future; its age counts from when waitd first saw it")
    return True


def _take_all(
    st: FileState, history: History, facts: Iterable[FileFact], now_ns: int, known: Container[str] | None = None
) -> None:
    """New or changed files: what its history, the drain, its companion,
    its group and its name say of each (a listing at start takes 100,000:
    what is the same for all of them is looked up once; `known`, the
    names the history knows in the directory, if at hand: the others
    are not looked up one by one)."""
    options = st.record.options
    handled, process, directory = history.handled, st.record.process, st.path_of("")
    left_alone, done, drain = st.left_alone, st.done, st.drain
    future_ns = now_ns + FUTURE_NOTE_NS
    judge = options.pattern is not None or options.key is not None
    for fact in facts:
        name = fact.name
        if left_alone:
            left_alone.pop(name, None)  # its pattern or key is judged again
        if (known is None or name in known) and handled(directory + name, process, fact):  # the line is not parsed
            st.set_done(fact)
        elif done:
            done.pop(name, None)
        if drain is not None and drain.get(name, fact.version) != fact.version:
            del drain[name]  # another version than the one ready at start
        if fact.mtime_ns > future_ns:
            st.note(name, "mtime is in the future; its age counts from when waitd first saw it")
        if options.done is not None:
            other, _ = companion_name(options, name, st.fields(name))
            if other is not None:
                st.companions[other] = name
        if st.groups is not None:
            _file(st, fact)
        elif judge:
            st.judge(name)  # at once, so that the status says so while it ages


def _file(st: FileState, fact: FileFact) -> None:
    """File a file into its group (a grouping record)."""
    assert st.groups is not None
    values = st.fields(fact.name)
    why = st.groups.filed(fact, values) if values is not None else st.no_parse()
    if why is not None:
        st.leave_alone(fact.name, why)
    else:
        st.told.pop(fact.name, None)
