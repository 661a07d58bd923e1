"""One drill run: two namespaces, a producer and a worker, each in its own process.

The namespaces are ``geobus local`` processes with SQLite stores (so kill -9,
SIGSTOP, restart and wipe are real); the producer and the worker are
``geobus._tools.drill.agent`` processes configured through ``GEOBUS_*`` variables, as
an application would be. They report through append-only event files, which the
run reads as they grow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._redact import redact
from ...local import LocalNamespaceProcess
from ...local._codec import parse_message
from ...testing import NamespacePair
from ...testing._namespaces import ROLES

QUEUE = "drill"
LOCK_DURATION = 4.0  # seconds: a killed worker's messages come back this soon
SETTLE_TIMEOUT = 30.0  # after the scenario: how long the worker gets to catch up


@dataclass
class Settings:
    """What every run of one ``geobus drill`` shares."""

    messages: int = 200
    rate: float = 100.0
    fault_seconds: float = 1.5
    seed: str = "0"
    workdir: Path = Path(".")


class EventLog:
    """Reads the agents' event files as they grow; keeps every complete line."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._files: dict[Path, tuple[int, bytes]] = {}

    def watch(self, path: Path) -> None:
        self._files.setdefault(path, (0, b""))

    def poll(self) -> list[dict[str, Any]]:
        fresh: list[dict[str, Any]] = []
        for path, (offset, partial) in list(self._files.items()):
            if not path.exists():
                continue
            with path.open("rb") as stream:
                stream.seek(offset)
                data = partial + stream.read()
                offset = stream.tell()
            *lines, rest = data.split(b"\n")
            self._files[path] = (offset, rest)  # a line cut by kill -9 stays unread
            for line in lines:
                if line.strip():
                    fresh.append(json.loads(line))
        fresh.sort(key=lambda event: event["t"])
        self.events.extend(fresh)
        return fresh


class Agent:
    """A producer or worker process started by this run (signalled only by its own id)."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.killed = False  # by the scenario (kill -9): its exit status is the drill's doing
        self.overdue = False  # did not exit within the grace period after SIGTERM
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9, as a scenario's fault."""
        if self.running:
            self.killed = True
            self.process.kill()
        self.process.wait(15)

    def pause(self, timeout: float = 5.0) -> bool:
        """SIGSTOP, and wait until the process is stopped (the signal lands asynchronously):
        its event file then says exactly what it holds. False if it did not stop in time."""
        if not self.running:
            return False
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        stat = Path(f"/proc/{self.process.pid}/stat")
        while time.monotonic() < deadline:
            try:  # "pid (comm) S ...": the state follows the last ")"
                if stat.read_text().rpartition(")")[2].split()[0] in ("T", "t"):
                    return True
            except (OSError, IndexError):
                return False  # it exited
            time.sleep(0.005)
        return False

    def resume(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL (and ``overdue``) if it has not exited after ``timeout``."""
        if self.running:
            self.process.terminate()
            self.process.send_signal(signal.SIGCONT)  # a paused agent acts on SIGTERM only once continued
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.overdue = True
                self.process.kill()
                self.process.wait(15)
        self._log.close()


@dataclass
class Run:
    """The context a scenario acts on: namespaces, agents, events, marks."""

    scenario: str
    api: str
    mode: str
    settings: Settings
    env_overrides: dict[str, str] = field(default_factory=dict)  # "{dir}" is the run's directory
    handle_time: float = 0.0
    worker_count: int = 1  # workers competing for the queues from the start
    lock_duration: float = LOCK_DURATION  # the namespaces' entities' (``geobus local``'s options)
    max_delivery_count: int = 100
    worker_args: tuple[str, ...] = ()  # the worker agents' extra options
    producer_args: tuple[str, ...] = ()  # the producer agents' extra options
    requires_session: bool = False  # the drill queue is session-enabled (an entities file)
    log: EventLog = field(default_factory=EventLog)
    marks: list[tuple[float, str]] = field(default_factory=list)
    allowed_losses: set[str] | None = None  # ids a passive disaster may lose
    violations: list[str] = field(default_factory=list)  # a scenario that could not do its part
    restart_bound: set[str] = field(
        default_factory=set
    )  # completed twins still queued at a worker's death
    producers: list[Agent] = field(default_factory=list)
    workers: list[Agent] = field(default_factory=list)
    progress: Callable[[Run], None] | None = None

    def __post_init__(self) -> None:
        self.dir = self.settings.workdir / f"{self.scenario}-{self.api}-{self.mode}"
        if self.dir.exists():  # a --keep directory used before: its events and stores would count
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        args = [
            "--queue",
            QUEUE,
            "--lock-duration",
            str(self.lock_duration),
            "--max-delivery-count",
            str(self.max_delivery_count),
        ]
        entities = self.dir / "entities.toml" if self.requires_session else None
        if entities is not None:  # a session-enabled queue, with the settings the options give
            entities.write_text(f"[queues.{QUEUE}]\nrequires_session = true\nlock_duration = {self.lock_duration}\n"
                                f"max_delivery_count = {self.max_delivery_count}\n")  # fmt: skip
        # Two regions, two keys: a connection string mixed up between them is refused.
        self.namespaces = NamespacePair.of_processes(
            args=args, stores=(self.dir / "primary.db", self.dir / "secondary.db"), entities=entities
        )

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.namespaces.start()
        for _ in range(self.worker_count):
            self.start_worker()
        self.start_producer()

    def _env(self, role: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEOBUS_")}
        primary, secondary = self.namespaces.connection_strings
        env.update(
            GEOBUS_MODE=self.mode,
            GEOBUS_PRIMARY_CONNECTION_STRING=primary,
            GEOBUS_SECONDARY_CONNECTION_STRING=secondary,
            GEOBUS_DEADLINE_ATTEMPT="1.0",
            GEOBUS_DEADLINE_SEND="3.0",
            GEOBUS_DEADLINE_RECEIVE_STALL="2.0",
            GEOBUS_RETRY_TOTAL="0",
            GEOBUS_BREAKER_COOLDOWN="2.0",
            PYTHONUNBUFFERED="1",
        )
        if role == "producer":  # the worker has no outbox: it sends nothing
            env.update(
                GEOBUS_OUTBOX_PATH=str(self.dir / "outbox.db"), GEOBUS_OUTBOX_BACKOFF_MAX="0.5"
            )
        env.update({name: value.format(dir=self.dir) for name, value in self.env_overrides.items()})
        return env

    def _agent(self, role: str, life: int, extra: list[str]) -> Agent:
        events = self.dir / f"{role}-{life}.jsonl"
        self.log.watch(events)
        command = [
            sys.executable, "-m", "geobus._tools.drill.agent", role,
            "--api", self.api, "--events", str(events), "--queue", QUEUE,
            "--seed", self.settings.seed, "--life", str(life), *extra,
        ]  # fmt: skip
        return Agent(command, self._env(role), self.dir / f"{role}-{life}.log")

    def start_producer(self, start: int = 0) -> Agent:
        extra = [
            "--count",
            str(self.settings.messages),
            "--start",
            str(start),
            "--rate",
            str(self.settings.rate),
            *self.producer_args,
        ]
        agent = self._agent("producer", len(self.producers), extra)
        self.producers.append(agent)
        return agent

    def kill_worker(self, life: int, held: set[str] | None = None) -> None:
        """kill -9 of one worker; the kill is an event, so counting knows the life is over
        (``held``: what it had fetched and not settled, when the scenario knows)."""
        self.workers[life].kill()
        self.worker_died(life, held)

    def worker_died(self, life: int, held: set[str] | None = None) -> None:
        """Record that worker ``life`` is gone, by the scenario's doing: counting knows its life is over."""
        self.log.poll()
        event: dict[str, Any] = {"e": "killed", "t": time.monotonic(), "life": life}
        if held is not None:
            event["held"] = sorted(held)
        self.log.events.append(event)

    def held_by(self, life: int) -> set[str]:
        """Ids a worker's receive calls returned that it has not settled (in or before its handler)."""
        held: set[str] = set()
        for event in self.log.events:
            if event.get("life") != life:
                continue
            if event["e"] == "batch":
                held.update(event["ids"])
            elif event["e"] in ("complete", "settle_failed"):
                held.discard(event["id"])
        return held

    def start_worker(self) -> Agent:
        extra = ["--handle-time", str(self.handle_time), *self.worker_args]
        agent = self._agent("worker", len(self.workers), extra)
        self.workers.append(agent)
        return agent

    def stop(self) -> None:
        """Stops every process this run started, each on its own: one that fails to stop
        does not leave the others running. Namespaces are woken and healed first, so the
        agents' own shutdown does not wait on a fault."""
        for namespace in self.namespaces:
            namespace.resume()
        for role in ROLES:
            with contextlib.suppress(Exception):  # not running, or paused a moment ago
                self.namespaces.heal(role)
        errors: list[BaseException] = []
        stops = [agent.terminate for agent in [*self.producers, *self.workers]]
        for stop in [*stops, self.namespaces.stop]:
            try:
                stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    # -- what happened so far ---------------------------------------------------------

    def ids(self, kind: str) -> set[str]:
        return {event["id"] for event in self.log.events if event["e"] == kind}

    def count(self, kind: str, **match: Any) -> int:
        return sum(
            1
            for event in self.log.events
            if event["e"] == kind and all(event.get(k) == v for k, v in match.items())
        )

    def mark(self, text: str) -> None:
        self.marks.append((time.monotonic(), text))

    # -- waiting ---------------------------------------------------------------------------

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> bool:
        """Polls the events until ``condition`` holds; False (and a mark) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._poll()
            if condition():
                return True
            if time.monotonic() >= deadline:
                self.mark(f"gave up waiting for {what} after {timeout:.0f} s")
                return False
            time.sleep(0.05)

    def wait_acked(self, count: int) -> bool:
        return self.wait_until(
            lambda: self.count("ack") >= count, 30.0, f"{count} acknowledged sends"
        )

    def hold(self, seconds: float) -> None:
        """Keep a fault in place for ``seconds`` (the outage's length), reading events."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._poll()
            time.sleep(0.05)

    def _poll(self) -> None:
        """Read the agents' new events; refresh the progress line."""
        self.log.poll()
        if self.progress is not None:
            self.progress(self)

    def producers_done(self, timeout: float = 60.0) -> bool:
        return self.wait_until(
            lambda: not any(a.running for a in self.producers), timeout, "the producer to finish"
        )

    def settled(self) -> bool:
        """Waits until every acknowledged message reached a handler and both queues are
        empty: nothing is left that could still surface as a late copy."""
        expected = self.ids("ack") - (self.allowed_losses or set())

        def done() -> bool:
            return expected <= self.ids("deliver") and self.queue_depths() == (0, 0)

        return self.wait_until(done, SETTLE_TIMEOUT, "every message to be delivered and settled")

    def queue_depths(self) -> tuple[int, int]:
        """Messages (locked or not) in the drill's queue on each namespace."""
        primary, secondary = (counts.get(QUEUE, 0) for counts in self.namespaces.counts().values())
        return primary, secondary

    # -- what the namespaces hold -----------------------------------------------------------

    def stored_ids(self, namespace: LocalNamespaceProcess) -> set[str]:
        """The message ids in a (stopped) namespace's store file, read without loading it."""
        assert namespace.store is not None
        db = sqlite3.connect(f"file:{namespace.store}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT body FROM messages WHERE path = ?", (QUEUE,)).fetchall()
        finally:
            db.close()
        return {str(parse_message(body).message_id) for (body,) in rows}

    def queued_ids(self) -> set[str]:
        """The ids still in either namespace's queue now (locked or not), by peeking."""
        from azure.servicebus import ServiceBusClient

        found: set[str] = set()
        for connection_string in self.namespaces.connection_strings:
            with ServiceBusClient.from_connection_string(connection_string) as client:
                with client.get_queue_receiver(QUEUE) as receiver:
                    sequence = 0
                    while True:
                        batch = receiver.peek_messages(
                            max_message_count=250, sequence_number=sequence
                        )
                        if not batch:
                            break
                        found |= {str(message.message_id) for message in batch}
                        sequence = max(int(message.sequence_number or 0) for message in batch) + 1
        return found

    def wipe(self, namespace: LocalNamespaceProcess) -> None:
        """Delete a stopped namespace's store: the region and its data are gone."""
        assert namespace.store is not None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{namespace.store}{suffix}").unlink(missing_ok=True)


def agent_tail(run: Run, role: str, lines: int = 5) -> str:
    """The last lines an agent wrote to stderr, keys and signatures redacted."""
    tails = []
    for path in sorted(run.dir.glob(f"{role}-*.log")):
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
        tails.extend(text)
    return redact(" | ".join(tails))
