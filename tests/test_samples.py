"""The samples run as they are, locally, print their result and no key; the index lists them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from geobus.local import DEV_KEY, LocalNamespace, development_key
from geobus.testing import NamespacePair

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
RUN_TIMEOUT = 60.0  # seconds; each sample finishes in a few

# A line each sample prints only when its scenario worked (besides exiting 0).
DEAD_LETTERS = (
    "order-2: NoAddress (the order has no shipping address)",
    "order-4: NoAddress (the order has no shipping address)",
    "read 2 dead-lettered orders, 0 twice",
)
SESSIONS = (
    "customer-a: placed, paid, shipped",
    "customer-b: placed, paid, shipped",
    "handled 2 sessions, 6 steps, in order; session states up to date",
)
EXPECTED: dict[str, tuple[str, ...]] = {
    "producer.py": ("sent 5 orders in passive mode",),
    "producer_async.py": ("order-6, order-7 (one batch): landed on primary", "sent 7 orders in passive mode"),
    "worker.py": ("handled 3 orders, 0 twice",),
    "worker_async.py": ("handled 3 orders, 0 twice",),
    "topic_subscription.py": ("billing handled 3 events, 0 twice",),
    "topic_subscription_async.py": ("billing handled 3 events, 0 twice",),
    "outbox.py": ("order-2: buffered in the outbox (lanes: any)", "buffered 3, drained 3, outbox depth 0"),
    "outbox_async.py": ("order-2: buffered in the outbox (lanes: any)", "buffered 3, drained 3, outbox depth 0"),
    "failover_drill.py": ("the primary refuses connections", "lost 0", "OK: nothing acknowledged was lost"),
    "failover_drill_async.py": ("the primary refuses connections", "lost 0", "OK: nothing acknowledged was lost"),
    "configuration.py": (
        "a bad value is refused at start-up: deadlines.attempt: must be > 0",
        "sent with the file's settings (passive mode, failback prefer_primary) to local namespaces",
    ),
    "identity_credentials.py": ("credential=DefaultAzureCredential", "sent with connection strings to local namespaces"),
    "identity_credentials_async.py": ("credential='default'", "sent with connection strings to local namespaces"),
    "entities_check.py": ("found the rule the secondary lacks, as set up",),
    "dead_letter_worker.py": DEAD_LETTERS,
    "dead_letter_worker_async.py": DEAD_LETTERS,
    "session_worker.py": SESSIONS,
    "session_worker_async.py": SESSIONS,
}
# Samples written to the SDK's API ahead of the geobus feature they use: skipped, with why.
PENDING: dict[str, str] = {}
# Samples without an async twin, and why it would add nothing.
# Loading a configuration does no I/O; comparing entities is sync in geobus.aio too.
SYNC_ONLY = {"configuration.py", "entities_check.py"}


def sample_names() -> list[str]:
    return sorted(path.name for path in SAMPLES.glob("*.py") if not path.name.startswith("_"))


def runnable(*names: str) -> list[object]:
    """``names`` as parameters, those in ``PENDING`` skipped with its reason."""
    return [
        pytest.param(name, marks=pytest.mark.skip(reason=PENDING[name])) if name in PENDING else name
        for name in names
    ]


def run_sample(name: str, settings: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python samples/<name>`` in a fresh environment: no GEOBUS_* but ``settings``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GEOBUS_")}
    environment.update(settings or {})
    process = subprocess.Popen(
        [sys.executable, str(SAMPLES / name)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=SAMPLES.parent,
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGINT first: the sample unwinds and stops the namespaces it started.
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"{name} did not finish in {RUN_TIMEOUT:.0f} s:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def run_cleanly(name: str, settings: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``run_sample``, which must exit 0 without a traceback and without printing a key."""
    finished = run_sample(name, settings)
    printed = finished.stdout + finished.stderr
    assert finished.returncode == 0, f"{name} exited {finished.returncode}:\n{printed[-3000:]}"
    assert "Traceback" not in printed, printed[-3000:]
    assert not any(development_key(n) in printed for n in (1, 2))  # each namespace's key
    assert "SharedAccessKey=" not in printed
    return finished


class TestSamplesRun:
    """Every sample finishes by itself locally, exits 0, prints its result and never a key."""

    @pytest.mark.timeout(RUN_TIMEOUT + 30)
    @pytest.mark.parametrize("name", runnable(*sample_names()))
    def test_sample_runs_locally(self, name: str) -> None:
        assert name in EXPECTED, f"add the line {name} prints on success to EXPECTED"
        finished = run_cleanly(name)
        for line in EXPECTED[name]:
            assert line in finished.stdout, f"{name} did not print {line!r}:\n{finished.stdout[-3000:]}"

    def test_expectations_name_existing_samples(self) -> None:
        assert set(EXPECTED) == set(sample_names())


class TestSamplesFromEnvironment:
    """With GEOBUS_PRIMARY_* set, a sample uses those namespaces (here: the test's own)."""

    @pytest.fixture
    def pair(self, namespace_factory: Callable[..., LocalNamespace]) -> NamespacePair:
        return NamespacePair(namespace_factory(), namespace_factory())

    @staticmethod
    def settings(pair: NamespacePair, **extra: str) -> dict[str, str]:
        return {
            "GEOBUS_PRIMARY_CONNECTION_STRING": pair.primary.connection_string,
            "GEOBUS_SECONDARY_CONNECTION_STRING": pair.secondary.connection_string,
            **extra,
        }

    @pytest.mark.timeout(RUN_TIMEOUT + 30)
    @pytest.mark.parametrize(("mode", "copies"), [("passive", (5, 0)), ("active", (5, 5))])
    def test_producer_sends_to_the_configured_namespaces_in_the_configured_mode(
        self, pair: NamespacePair, mode: str, copies: tuple[int, int]
    ) -> None:
        finished = run_cleanly("producer.py", self.settings(pair, GEOBUS_MODE=mode))
        assert f"namespaces from GEOBUS_* (primary {pair.primary.fully_qualified_namespace}" in finished.stdout
        assert f"sent 5 orders in {mode} mode" in finished.stdout
        assert (pair.primary.counts().get("orders", 0), pair.secondary.counts().get("orders", 0)) == copies

    @pytest.mark.timeout(RUN_TIMEOUT + 30)
    def test_worker_reads_and_empties_the_configured_namespaces(
        self, pair: NamespacePair
    ) -> None:
        finished = run_cleanly("worker_async.py", self.settings(pair))
        assert "handled 3 orders, 0 twice" in finished.stdout
        assert pair.counts() == {"primary": {}, "secondary": {}}

    @pytest.mark.timeout(RUN_TIMEOUT + 30)
    @pytest.mark.parametrize("name", runnable("dead_letter_worker.py", "dead_letter_worker_async.py"))
    def test_dead_letter_worker_empties_both_dead_letter_queues(self, pair: NamespacePair, name: str) -> None:
        finished = run_cleanly(name, self.settings(pair))
        assert "read 2 dead-lettered orders, 0 twice" in finished.stdout
        assert pair.counts() == {"primary": {}, "secondary": {}}  # each twin completed too

    @pytest.mark.timeout(RUN_TIMEOUT + 30)
    def test_a_fault_sample_says_it_runs_locally_and_leaves_the_configured_namespaces_alone(
        self, pair: NamespacePair
    ) -> None:
        finished = run_cleanly("outbox.py", self.settings(pair))
        assert "it ignores GEOBUS_PRIMARY_*/GEOBUS_SECONDARY_* and starts two local namespaces" in finished.stdout
        assert "buffered 3, drained 3, outbox depth 0" in finished.stdout
        assert pair.counts() == {"primary": {}, "secondary": {}}

    @pytest.mark.timeout(RUN_TIMEOUT + 30)
    def test_configuration_reads_the_real_environment(self, pair: NamespacePair) -> None:
        finished = run_cleanly("configuration.py", self.settings(pair, GEOBUS_DEADLINE_ATTEMPT="4"))
        assert "from_env() (your GEOBUS_* variables)" in finished.stdout
        assert "deadlines: attempt 4 s" in finished.stdout
        assert "to your namespaces: landed on primary" in finished.stdout
        assert pair.primary.counts() == {"orders": 1}

    @pytest.mark.timeout(RUN_TIMEOUT + 30)
    def test_entities_check_passes_alike_namespaces_and_fails_different_ones(self, pair: NamespacePair) -> None:
        for namespace in pair:
            namespace.declare_topic("order-events", ["billing"])
        finished = run_cleanly("entities_check.py", self.settings(pair))
        assert "define the same entities" in finished.stdout
        pair.primary.declare_queue("orders")
        different = run_sample("entities_check.py", self.settings(pair))
        assert different.returncode == 1, different.stderr
        assert "orders" in different.stdout and "missing in secondary" in different.stdout
        assert "geobus entities sync --from primary" in different.stdout

    def test_a_bad_setting_fails_with_the_field_named(self, pair: NamespacePair) -> None:
        finished = run_sample("producer.py", self.settings(pair, GEOBUS_MODE="sideways"))
        assert finished.returncode != 0
        assert "mode: must be one of active | passive, got a value starting 'side' (8 characters)" in finished.stderr
        assert DEV_KEY not in finished.stdout + finished.stderr


class TestSamplesIndex:
    """samples/README.md lists every sample, and everything it links to exists."""

    def test_every_sample_is_listed(self) -> None:
        index = (SAMPLES / "README.md").read_text()
        linked = set(re.findall(r"\]\(([^)/#:]+)\)", index))
        missing = set(sample_names()) - linked
        assert not missing, f"samples/README.md does not list {sorted(missing)}"

    def test_every_listed_file_exists(self) -> None:
        index = (SAMPLES / "README.md").read_text()
        linked = set(re.findall(r"\]\(([^)/#:]+)\)", index))
        assert linked, "samples/README.md links to no sample"
        assert not {name for name in linked if not (SAMPLES / name).is_file()}

    def test_samples_come_in_sync_async_pairs(self) -> None:
        names = set(sample_names())
        for name in names - SYNC_ONLY:
            twin = name.replace("_async.py", ".py") if name.endswith("_async.py") else name.replace(".py", "_async.py")
            assert twin in names, f"{name} has no twin {twin}"
