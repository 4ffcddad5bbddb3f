# SPDX-License-Identifier: MIT
"""The two removal rules of a record's files: expiry and keep-after.

`expire` removes the files in the spool longer than hours-too-old, handled
or not; `keep` removes the files handled with exit 0 beyond the newest
keep-after (for a record that handles groups, the files of the groups
beyond the newest keep-after), once every record matching them is done.
Both go through `prune.remove`, which removes only the version planned: a
file rewritten in place is looked at again instead.  A file removed goes
with its companion (`done=`); one that cannot be removed is logged once a
version.  Each returns how many files it removed, for the record's tally.

The decisions are `prune.expired` and `prune.over_keep`; what a file is
comes from the record's `View`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from waitd.decide import removal as prune
from waitd.decide.removal import Outcome
from waitd.journal.history import History, escape
from waitd.spool.directory import FileFact
from waitd.spool.view import View

log = logging.getLogger("waitd")


def expire(view: View, history: History, now_ns: int, busy: Callable[[str], bool]) -> int:
    """Remove files in the spool longer than hours-too-old; how many."""
    if view.spool is None:
        return 0
    removed = 0
    for fact in prune.expired(list(view.cands.facts.values()), now_ns, view.record.too_old_h):
        if busy(view.path_of(fact.name)):
            continue
        event = view.latest(history, fact)
        handled = event is not None and event.consumed
        hours = (now_ns - fact.spool_ns) / 3.6e12
        why = f"expired: in the spool {hours:.3g} h, hours-too-old is {view.record.too_old_h:g}"
        removed += _remove(view, history, fact, why if handled else f"{why}; it was never handled", now_ns)
    return removed


def keep(view: View, history: History, busy: Callable[[str], bool], all_done: Callable[[str, FileFact], bool]) -> int:
    """Remove handled files (exit 0) beyond the newest keep-after; how many."""
    if view.spool is None or view.record.keep < 0 or len(view.done) <= view.record.keep:
        return 0
    now_ns = time.time_ns()
    removed = 0
    for fact in _beyond_keep(view, history):
        path = view.path_of(fact.name)
        if busy(path) or not all_done(path, fact):
            continue
        removed += _remove(view, history, fact, f"handled with exit 0; keep-after is {view.record.keep}", now_ns)
    return removed


def _beyond_keep(view: View, history: History) -> list[FileFact]:
    """The handled files beyond keep-after: files, or, for a grouping
    record, the files of the groups beyond the newest keep-after."""
    if view.gatherer is None:
        return prune.over_keep(list(view.done.values()), view.record.keep)
    by_group: dict[str, list[FileFact]] = {}
    for fact in view.done.values():
        event = view.latest(history, fact)
        by_group.setdefault(event.group if event is not None and event.group else fact.name, []).append(fact)
    newest = [max(facts, key=lambda f: (f.mtime_ns, f.name)) for facts in by_group.values()]
    old = {f.name for f in prune.over_keep(newest, view.record.keep)}
    return [
        f for facts in by_group.values() if max(facts, key=lambda f: (f.mtime_ns, f.name)).name in old for f in facts
    ]


def _remove(view: View, history: History, fact: FileFact, why: str, now_ns: int) -> int:
    assert view.spool is not None
    path = escape(view.path_of(fact.name))
    removal = prune.remove(view.spool.fd, fact)
    if removal.outcome is Outcome.REMOVED:
        level = logging.WARNING if "never handled" in why else logging.INFO
        log.log(level, "record %d: removed %s: %s", view.number, path, why)
        if view.journal is not None:
            view.journal.removed(view.record, fact, why)
        _remove_companion(view, fact.name)
        view.forget(fact.name)
        return 1
    if removal.outcome is Outcome.GONE:
        view.forget(fact.name)  # another record sharing the directory removed it
    elif removal.outcome is Outcome.CHANGED:
        view.look_again(history, fact.name, now_ns)  # a new delivery: a candidate again
    elif view.unremovable.get(fact.name, (None,))[0] != fact.version:
        # Once per version, not at every pass: the next poll tries again.
        log.warning("record %d: cannot remove %s (%s): %s", view.number, path, why, removal.reason)
        view.unremovable[fact.name] = (fact.version, removal.reason)
    return 0


def _remove_companion(view: View, name: str) -> None:
    companion = view.companion(name)
    if companion is None or view.spool is None:
        return
    view._owner.pop(companion, None)
    removal = prune.remove_name(view.spool.fd, companion)
    shown = escape(view.path_of(companion))
    if removal.outcome is Outcome.REMOVED:
        log.info("record %d: removed %s: the companion of %s", view.number, shown, escape(name))
    elif removal.outcome is Outcome.REFUSED:
        log.warning("record %d: cannot remove %s: %s", view.number, shown, removal.reason)
