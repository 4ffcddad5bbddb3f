# SPDX-License-Identifier: MIT
"""A run's states: the end's edge as the table has it, and the states
hashed by identity (each transition looks two up)."""

from __future__ import annotations

import pytest

from waitd.decide.facts import FileFact
from waitd.decide.outcome import Job
from waitd.run.executors.local import Local
from waitd.run.runs import _EDGES, Run, RunState


def _run(state: RunState) -> Run:
    job = Job(("/in", "*", "h"), "h", (FileFact(0, "a", 0, 0, 0),), ("/in/a",))
    run = Run(1, job, 1, 0.0, 0.0, Local())
    run.state = state
    return run


@pytest.mark.parametrize("state", list(RunState))
def test_the_end_takes_the_edge_the_table_has(state: RunState) -> None:
    run = _run(state)
    if RunState.ENDED in _EDGES[state]:
        run.transition(RunState.ENDED)
        assert run.state is RunState.ENDED
    else:
        with pytest.raises(AssertionError, match="no edge ended -> ended"):
            run.transition(RunState.ENDED)


def test_states_hash_as_themselves() -> None:
    assert {s: s.value for s in RunState}[RunState.KILLED] == "killed"
    assert RunState("stopping") is RunState.STOPPING
