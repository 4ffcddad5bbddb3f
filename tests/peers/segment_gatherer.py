# SPDX-License-Identifier: MIT
"""pytroll-collectors' segment_gatherer.py as a peer that waitd's groups are compared to.

`SegmentGathererPeer` writes a YAML configuration from a `GroupSpec`, starts
the real `segment_gatherer.py -c CONFIG` console script, feeds it posttroll
`file` messages as trollstalker.py publishes them (`send`), and collects the
`dataset` messages it publishes (`datasets`, `no_more`).  `peer_groups` runs
one arrival schedule from start to end.  No nameserver, no multicast: this
side publishes on 127.0.0.1 and subscribes on 127.0.0.1.

It does not watch a directory (trollstalker.py would) and carries no
trollstalker aliases, custom variables or orbit fixes: `send` builds the
message itself.  It runs one pattern only (segment_gatherer publishes a
`collection` rather than a `dataset` for several).

GroupSpec notation, as segment_gatherer 0.22.0 reads `critical_files`,
`wanted_files` and `all_files`: items joined by "," (no spaces: a space is
part of the channel name), each item exactly one "CHANNEL:SEGMENTS".
CHANNEL fills the pattern's `channel_name` field and may be empty
(":PRO"); SEGMENTS fills its `segment` field and is one name ("PRO",
"000006") or an integer range "FIRST-LAST", both ends included, zero-padded
to the width of FIRST when FIRST starts with 0 ("000001-000003" gives
000001, 000002, 000003; "1-3" gives 1, 2, 3).  "VIS006:1,2" is not a list of
two segments: the item "2" has no ":" and segment_gatherer dies of a
ValueError at its first file (GroupSpec refuses it).  ":" alone, an empty
string or None names the one file of a pattern with neither `channel_name`
nor `segment`, and nothing otherwise.  The fields must be string fields
(`{segment:_<9s}`): an integer field (`{segment:04d}`) kills it at its
first file.  Names are compared as masks: the pattern formatted with the
slot's first file's fields, `variable_tags` left as wildcards, never as
globs.

Semantics measured on 0.22.0 (tests/test_peer_segment_gatherer.py pins
them): a slot is published a few milliseconds after every wanted and
critical file is in; at timeliness (counted from the slot's first file,
never extended) it is published with what is there, unless
`is_critical_set` is true and a critical file is missing, when it is
dropped.  With `is_critical_set` false the critical files are only more
wanted files.  "At timeliness" means at the first of its idle ticks after
it: it looks at its slots once a second, counted from the last message it
received (timeliness 1.5 s gives 2.0 s).  A file whose mask is not in
`all_files` is dropped, so wanted and critical files must be listed in
`all` too (segment_gatherer adds neither list to it); a file already in
the open slot is counted once; a file after publication opens a new slot.
A slot is found by time alone (`time_tolerance`, default 30 s, or the
start time floored to `group_by_minutes`), and its other fields
(platform, ...) come from its first file.

Pitfalls: segment_gatherer's publisher binds every interface (its
configuration gives posttroll a port, never an address); a message without
`sensor` kills it (KeyError); posttroll turns every string that reads as
an ISO time into a datetime on decoding, so a field such as CSPP's
processing time matches nothing unless it is in `variable_tags`; SIGTERM
waits for open slots, so `stop` sends SIGKILL.  `start` returns when our
SUB socket's handshake with its publisher is done and a probe `file`
message (a uid the pattern does not match, which it logs and skips) shows
in its log, about 0.1 s after the spawn here.  `start` raises
RuntimeError, with the tail of the peer's log, when the peer does not come
up; `datasets` raises AssertionError when fewer datasets than asked come
in time.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trollsift
import yaml
import zmq
from posttroll.message import Message
from posttroll.publisher import create_publisher_from_dict_config

IN_TOPIC = "/waitd-peer/file"
OUT_TOPIC = "/waitd-peer/dataset"
READY_TIMEOUT_S = 30.0
_PROBE_PREFIX = "waitd-peer-probe-"


@dataclass
class GroupSpec:
    """One segment_gatherer pattern and its timing, in waitd's units (seconds)."""

    pattern: str  # trollsift pattern of the file names
    critical: str | None = None  # critical_files, notation in the module docstring
    wanted: str | None = None  # wanted_files
    all: str | None = None  # all_files
    timeliness_s: float = 10
    tolerance_s: float | None = None  # time_tolerance; None: segment_gatherer's 30 s
    group_by_minutes: int | None = None
    variable_tags: Sequence[str] = ()
    # is_critical_set: None is true when `critical` is given, as segment_gatherer
    # reads an .ini file; its YAML default is false, which makes `critical`
    # mere wanted files.
    is_critical_set: bool | None = None
    sensor: str = "seviri"  # trollstalker's `instruments`, comma-separated

    def __post_init__(self) -> None:
        for name in ("critical", "wanted", "all"):
            for item in (getattr(self, name) or ":").split(","):
                if item.count(":") != 1:
                    raise ValueError(f"GroupSpec.{name}: item {item!r} is not CHANNEL:SEGMENTS")

    def config(self, listen: str, publish_port: int) -> dict[str, Any]:
        """segment_gatherer's configuration: listen to `listen`, publish on `publish_port`."""
        critical_set = bool(self.critical) if self.is_critical_set is None else self.is_critical_set
        config: dict[str, Any] = {
            "patterns": {
                "peer": {
                    "pattern": self.pattern,
                    "critical_files": self.critical,
                    "wanted_files": self.wanted,
                    "all_files": self.all,
                    "is_critical_set": critical_set,
                    "variable_tags": list(self.variable_tags),
                }
            },
            "timeliness": self.timeliness_s,
            "posttroll": {
                "topics": [IN_TOPIC],
                "addresses": [listen],
                "nameservers": False,
                "publish_port": publish_port,
                "publish_topic": OUT_TOPIC,
            },
        }
        if self.tolerance_s is not None:
            config["time_tolerance"] = self.tolerance_s
        if self.group_by_minutes is not None:
            config["group_by_minutes"] = self.group_by_minutes
        return config


@dataclass(frozen=True, slots=True)
class Published:
    """One dataset message: its members' uids in order, when it came, all its data."""

    members: list[str]
    at_mono: float
    data: dict[str, Any] = field(repr=False)


def stalker_message(spec: GroupSpec, filename: str, directory: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The data of trollstalker's `file` message for `filename` in `directory`.

    The fields parsed from the name (times as datetimes), start_time from
    `time` or `nominal_time` when the pattern has none, dates joined to
    times and end_time moved past start_time, then uri, uid and sensor (a
    list), then `extra` (a None value removes the key).
    """
    info: dict[str, Any] = dict(trollsift.Parser(spec.pattern).parse(filename))
    info.setdefault("start_time", info.get("time", info.get("nominal_time")))
    if "start_date" in info:
        info["start_time"] = dt.datetime.combine(info["start_date"].date(), info["start_time"].time())
        info.setdefault("end_date", info.pop("start_date"))
    if "end_date" in info:
        info["end_time"] = dt.datetime.combine(info.pop("end_date").date(), info["end_time"].time())
    if info["start_time"] is None:
        del info["start_time"]
    else:
        while "end_time" in info and info["start_time"] > info["end_time"]:
            info["end_time"] += dt.timedelta(days=1)
    info.update(uri=os.path.join(directory, filename), uid=filename, sensor=spec.sensor.split(","))
    info.update(extra)
    return {key: value for key, value in info.items() if value is not None}


class SegmentGathererPeer:
    """segment_gatherer.py running as a subprocess on loopback ports."""

    def __init__(
        self,
        workdir: Path,
        spec: GroupSpec,
        listen: str | None = None,
        probe: Callable[[str], None] | None = None,
    ) -> None:
        """`listen`: another publisher to take the `file` messages from (waitd's
        posttroll sink), instead of our own; `probe(uid)` then makes that
        publisher send a `file` message with that uid (`_probe`)."""
        self.workdir = Path(workdir)
        self.spec = spec
        self.listen = listen
        self.probe = probe
        self.config_path = self.workdir / "segment_gatherer.yaml"
        self.log_path = self.workdir / "segment_gatherer.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sent: list[tuple[str, float]] = []  # (uid, time.monotonic()) of each send
        self.received: list[Published] = []
        self._taken = 0
        self._publisher: Any = None
        self._context = zmq.Context()
        self._receiving = threading.Event()
        self._arrived = threading.Condition()
        self._receiver: threading.Thread | None = None

    def __enter__(self) -> SegmentGathererPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start and stop -------------------------------------------------

    def start(self) -> None:
        """Start the peer and return once a message sent now reaches it and
        a dataset it publishes now reaches us."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.listen is not None:
            listen = self.listen
        else:
            self._publisher = create_publisher_from_dict_config(
                {"address": "tcp://127.0.0.1:0", "nameservers": False}
            ).start()
            listen = f"tcp://127.0.0.1:{self._publisher.port_number}"
        for _attempt in range(3):
            # Its publisher binds *:PORT; another process may take the port
            # between our choice and its bind, so a failed bind is retried.
            publish_port = _free_port()
            self._spawn(listen, publish_port)
            if self._subscribe(publish_port):
                break
            if "Address already in use" not in self.log():
                self._fail("segment_gatherer exited at start")
        else:
            self._fail("segment_gatherer found no free port in three tries")
        self._probe()

    def _spawn(self, listen: str, publish_port: int) -> None:
        self.config_path.write_text(yaml.safe_dump(self.spec.config(listen, publish_port), sort_keys=False))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [_script(), "-v", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def _subscribe(self, publish_port: int) -> bool:
        """Connect our SUB socket to the peer's publisher; False if the peer died first.

        A completed ZMTP handshake means our subscription is on its way:
        the peer publishes nothing before our first file, sent after `_probe`.
        """
        sock = self._context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)
        sock.setsockopt_string(zmq.SUBSCRIBE, "pytroll:/" + OUT_TOPIC)
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sock.connect(f"tcp://127.0.0.1:{publish_port}")
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while not (up := bool(monitor.poll(50))):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
        finally:
            sock.disable_monitor()
            monitor.close()
        if not up:
            sock.close()  # before _fail: the context's term() waits for every socket
            if self.proc.poll() is None:
                self._fail(f"segment_gatherer's port {publish_port} did not answer in {READY_TIMEOUT_S} s")
            return False
        self._receiving.set()
        self._receiver = threading.Thread(target=self._receive, args=(sock,), name="peer-receiver", daemon=True)
        self._receiver.start()
        return True

    def _probe(self) -> None:
        """Send harmless `file` messages until the peer logs one (ZeroMQ's slow joiner).

        A uid that the pattern does not match is logged ("New message
        received") and skipped by segment_gatherer: no slot is made.
        """
        parser = trollsift.Parser(self.spec.pattern)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for n in range(1_000_000):
            uid = f"{_PROBE_PREFIX}{n}"
            if parser.validate(uid):
                self._fail(f"the pattern matches the probe name {uid!r}")
            if self.probe is not None:
                self.probe(uid)
            else:
                self._publish({"uid": uid, "uri": "/" + uid, "sensor": [self.spec.sensor]})
            probe_deadline = time.monotonic() + 0.1
            while time.monotonic() < probe_deadline:
                if f'"uid": "{_PROBE_PREFIX}' in self.log():
                    return
                time.sleep(0.01)
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._fail("segment_gatherer did not receive the probe messages")

    def stop(self) -> None:
        """SIGKILL the peer (its TERM waits for open slots) and close our sockets."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self._receiving.clear()
        if self._receiver is not None:
            self._receiver.join()
            self._receiver = None
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        if not self._context.closed:
            self._context.term()

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _fail(self, what: str) -> None:
        self.stop()
        tail = "\n".join(self.log().splitlines()[-20:])
        raise RuntimeError(f"{what}; {self.log_path}:\n{tail}")

    # -- messages -------------------------------------------------------

    def send(self, filename: str, directory: str = "/in", **extra: Any) -> None:
        """Publish trollstalker's `file` message for `filename` arrived in `directory`.

        Its time is taken before the message is made: the peer may start
        its timeliness from the message's own time, or as it arrives, both
        before a time taken after the send (which made an interval measured
        from it 3 ms short under load)."""
        at = time.monotonic()
        self._publish(stalker_message(self.spec, filename, directory, extra))
        self.sent.append((filename, at))

    def _publish(self, data: dict[str, Any]) -> None:
        self._publisher.send(str(Message(IN_TOPIC, "file", data)))

    def _receive(self, sock: zmq.Socket) -> None:
        """Collect the peer's dataset messages, each with the time it came."""
        try:
            while self._receiving.is_set():
                if not sock.poll(50):
                    continue
                msg = Message.decode(sock.recv_string())
                if msg.type != "dataset":
                    continue
                members = [item["uid"] for item in msg.data["dataset"]]
                with self._arrived:
                    self.received.append(Published(members, time.monotonic(), msg.data))
                    self._arrived.notify_all()
        finally:
            sock.close()

    def datasets(self, count: int, timeout: float) -> list[list[str]]:
        """Wait for the next `count` datasets; return each one's member uids, in order."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) - self._taken >= count, timeout):
                got = [p.members for p in self.received[self._taken :]]
                raise AssertionError(f"segment_gatherer published {got} in {timeout} s, expected {count} datasets")
            taken = self.received[self._taken : self._taken + count]
            self._taken += count
        return [p.members for p in taken]

    def no_more(self, seconds: float) -> list[list[str]]:
        """The datasets not yet returned, published up to `seconds` from now."""
        time.sleep(seconds)
        with self._arrived:
            taken = self.received[self._taken :]
            self._taken = len(self.received)
        return [p.members for p in taken]


def peer_groups(
    workdir: Path, spec: GroupSpec, arrivals: list[tuple[str, float]], margin_s: float = 2.0
) -> list[list[str]]:
    """Send each file name `delay` seconds after the previous one; return every
    dataset published until timeliness plus `margin_s` after the last.

    segment_gatherer looks at its slots' timeouts once a second when idle,
    so the margin must be over a second.
    """
    with SegmentGathererPeer(workdir, spec) as peer:
        for name, delay_s in arrivals:
            time.sleep(delay_s)
            peer.send(name)
        return peer.no_more(spec.timeliness_s + margin_s)


def _script() -> str:
    """The segment_gatherer.py console script beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "segment_gatherer.py"
    found = str(beside) if beside.exists() else shutil.which("segment_gatherer.py")
    if found is None:
        raise RuntimeError("segment_gatherer.py not found: pip install pytroll-collectors")
    return found


def _free_port() -> int:
    """A TCP port free on every interface now (the peer binds *:PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]
