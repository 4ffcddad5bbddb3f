# SPDX-License-Identifier: MIT
"""A run's states: `Run.end`, the end's own edge, agrees with the table."""

from __future__ import annotations

import pytest

from waitd.decide.facts import FileFact
from waitd.decide.outcome import Job
from waitd.run.executors.local import Local
from waitd.run.runs import _EDGES, Run, RunState


def _run(state: RunState) -> Run:
    job = Job(("/in", "*", "h"), "h", (FileFact("a", 0, 0, 0, 0, 0),), ("/in/a",))
    run = Run(1, job, 1, 0.0, 0.0, Local())
    run.state = state
    return run


@pytest.mark.parametrize("state", list(RunState))
def test_end_takes_the_edge_the_table_has(state: RunState) -> None:
    by_end, by_table = _run(state), _run(state)
    if RunState.ENDED in _EDGES[state]:
        by_end.end()
        by_table.transition(RunState.ENDED)
        assert by_end.state is by_table.state is RunState.ENDED
    else:
        for move in (by_end.end, lambda: by_table.transition(RunState.ENDED)):
            with pytest.raises(AssertionError, match="no edge ended -> ended"):
                move()


def test_states_hash_as_themselves() -> None:
    assert {s: s.value for s in RunState}[RunState.KILLED] == "killed"
    assert RunState("stopping") is RunState.STOPPING
