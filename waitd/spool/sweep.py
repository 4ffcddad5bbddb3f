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
from waitd.decide.facts import FileFact
from waitd.journal.history import History, escape
from waitd.spool import unlink
from waitd.spool.unlink import Outcome
from waitd.spool.view import View

log = logging.getLogger("waitd")


def expire(view: View, history: History, now_ns: int, busy: Callable[[str], bool]) -> int:
    """Remove files in the spool longer than hours-too-old; how many."""
    if view.spool is None:
        return 0
    removed = 0

    def handled(fact: FileFact) -> bool:
        event = view.latest(history, fact)
        return event is not None and event.consumed

    too_old = prune.expiries(
        list(view.cands.facts.values()),
        now_ns,
        view.record.too_old_h,
        lambda name: busy(view.path_of(name)),
        handled,
    )
    for expiry in too_old:
        why = f"expired: in the spool {expiry.hours:.3g} h, hours-too-old is {view.record.too_old_h:g}"
        removed += _remove(
            view, history, expiry.fact, why if expiry.handled else f"{why}; it was never handled", now_ns
        )
    return removed


def keep(view: View, history: History, busy: Callable[[str], bool], all_done: Callable[[str, FileFact], bool]) -> int:
    """Remove handled files (exit 0) beyond the newest keep-after; how many."""
    if view.spool is None or view.record.keep < 0 or len(view.done) <= view.record.keep:
        return 0
    now_ns = time.time_ns()
    removed = 0
    grouped = view.gatherer is not None
    done = [(fact, _group_of(view, history, fact) if grouped else None) for fact in view.done.values()]
    over = prune.beyond_keep(
        done,
        view.record.keep,
        lambda name: busy(view.path_of(name)),
        lambda fact: all_done(view.path_of(fact.name), fact),
        grouped,
    )
    for fact in over:
        removed += _remove(view, history, fact, f"handled with exit 0; keep-after is {view.record.keep}", now_ns)
    return removed


def _group_of(view: View, history: History, fact: FileFact) -> str | None:
    event = view.latest(history, fact)
    return event.group if event is not None else None


def _remove(view: View, history: History, fact: FileFact, why: str, now_ns: int) -> int:
    assert view.spool is not None
    path = escape(view.path_of(fact.name))
    removal = unlink.remove(view.spool.fd, fact)
    if removal.outcome is Outcome.REMOVED:
        level = logging.WARNING if "never handled" in why else logging.INFO
        log.log(level, "record %d: removed %s: %s", view.number, path, why)
        if view.outbox is not None:
            view.outbox.removed(view, fact, why)
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
    removal = unlink.remove_name(view.spool.fd, companion)
    shown = escape(view.path_of(companion))
    if removal.outcome is Outcome.REMOVED:
        log.info("record %d: removed %s: the companion of %s", view.number, shown, escape(name))
    elif removal.outcome is Outcome.REFUSED:
        log.warning("record %d: cannot remove %s: %s", view.number, shown, removal.reason)
