# SPDX-License-Identifier: MIT
"""Sources: work that arrives as messages (waitd.conf's `[source NAME]`).

`supervisor` is waitd's side (a child process per source, restarted when
it dies), `child` the source's own process, `spooler` puts each message
into the source's queue exactly once, `stomp` and `posttroll` are the
kinds, `cancel` asks waitd to cancel a file (its control socket).
"""
