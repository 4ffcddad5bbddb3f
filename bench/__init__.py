# SPDX-License-Identifier: MIT
"""Benchmarks of waitd (issue 5): figures, not tests.

`python -m bench` prints the machine, the method, and one line of figures
per scenario next to a baseline measured in the same run and the issue's
target, marked met or missed:

- `backlog`: drain 10,000 ready files (then 20,000; then 4 records of
  2,500) with `waitd --once` against a bare spawn-and-wait loop of /bin/true;
- `arrivals`: files renamed in at a steady rate; latency from the rename to
  the handler's start, for waitd (inotify), waitd --poll, an inotifywait
  shell loop and watchmedo;
- `idle`: CPU used by a daemon watching 10,000 files that are not yet due;
- `scale`: start-up time to the first handler run and peak RSS with
  100,000 ready files and a history of 1,000,000 lines.

Each scenario works in its own temporary directory, removes it, and kills
every process it started.  The daemon itself is never modified here.
"""
