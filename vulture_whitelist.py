# SPDX-License-Identifier: MIT
"""What vulture cannot see used (make lint runs it on waitd/ and this file).

Each name is here for a reason vulture cannot know: read by JSON, called by
a library, read by the tests only, or there for another branch of issue 20
to use.  A name that becomes used in waitd/ is taken out; one that becomes
dead is removed from the code and from here.
"""

from waitd.daemon import http
from waitd.decide import facts, regions
from waitd.formats import events, status
from waitd.journal import logfile
from waitd.sinks import metrics, stomp
from waitd.sources import stomp as stomp_source
from waitd.spool import directory

# The status document: dataclass fields turned into JSON (dataclasses.asdict),
# read by waitd -s status --json's readers, not by waitd's code.
status.RunReport.age_s
status.Status.schema
status.Status.written_at
status.Status.other_runs

# Called by libraries: stomp.py's listener callbacks, prometheus_client's
# collector protocol.
stomp._Listener.on_receipt
stomp._Listener.on_error
stomp._Listener.on_disconnected
metrics._Gauges.collect
stomp_source._Listener.on_message

# logging's: a Formatter method it calls, and the module switches it reads
# (the logging HOWTO's "Optimization").
logfile._Formatter.formatTime
logfile.logging._srcfile
logfile.logging.logThreads
logfile.logging.logProcesses
logfile.logging.logMultiprocessing

# Read by the tests only (test_scan.py, test_prune.py).
facts.FileFact.is_link
directory.Identity.shared

# Read by http.server's BaseHTTPRequestHandler (its protocol).
http._Handler.server_version
http._Handler.protocol_version
http._Handler.log_message
http._Handler.do_GET
http._Handler.do_POST
http._Handler.close_connection
http.Http.server.daemon_threads
status.Waiting.ready_at

# The ended event's field: filled by keyword, read from its JSON by the isis format.
events.Ended.admin_log

# Read by the tests and the bench (test_regions.py, bench/regions.py): the swaths drawn.
regions.Geometry.computed
