"""The pytest plugin's ``geobus_entities`` fixture, overridden as a user would: a test
project run by pytester, with the real SDK."""

from __future__ import annotations

import pytest

from .test_pytest_plugin import INI, OPT_IN

pytestmark = pytest.mark.timeout(90)

ENTITIES = """
[queues.once]
requires_duplicate_detection = true

[queues.short]
lock_duration = 2
"""

CONFTEST = (
    OPT_IN
    + """
from pathlib import Path

import pytest


@pytest.fixture
def geobus_entities():
    return Path(__file__).parent / "entities.toml"
"""
)

USER_TESTS = """
import datetime

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage


def send_twice(ns, queue):
    with ServiceBusClient.from_connection_string(ns.connection_string) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("a", message_id="same"))
            sender.send_messages(ServiceBusMessage("a", message_id="same"))


def test_every_namespace_fixture_declares_them(geobus_namespace, geobus_namespace_pair, geobus_namespace_factory):
    extra = geobus_namespace_factory()
    plain = geobus_namespace_factory(entities=None)
    for ns in (geobus_namespace, *geobus_namespace_pair, extra, plain):
        send_twice(ns, "once")
    assert [ns.counts() for ns in (geobus_namespace, *geobus_namespace_pair, extra)] == [{"once": 1}] * 4
    assert plain.counts() == {"once": 2}


def test_a_declared_lock(geobus_namespace):
    send_twice(geobus_namespace, "short")
    with ServiceBusClient.from_connection_string(geobus_namespace.connection_string) as client:
        with client.get_queue_receiver("short", max_wait_time=5) as receiver:
            [message] = receiver.receive_messages(max_wait_time=5)
            ahead = message.locked_until_utc - datetime.datetime.now(datetime.timezone.utc)
            assert ahead < datetime.timedelta(seconds=10)
            receiver.complete_message(message)


class TestOverriddenInAClass:
    @pytest.fixture
    def geobus_entities(self):
        return {"topics": {"events": {"subscriptions": {"audit": {"max_delivery_count": 1}}}}}

    def test_the_class_wins(self, geobus_namespace):
        with ServiceBusClient.from_connection_string(geobus_namespace.connection_string) as client:
            with client.get_topic_sender("events") as sender:
                sender.send_messages(ServiceBusMessage("e"))
        assert geobus_namespace.counts() == {"events/subscriptions/audit": 1}
"""


class TestEntitiesFixture:
    """Overriding ``geobus_entities`` reaches every namespace fixture; a bad file fails setup."""

    def test_overridden_in_conftest_and_in_a_class(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(INI)
        pytester.makeconftest(CONFTEST)
        (pytester.path / "entities.toml").write_text(ENTITIES)
        pytester.makepyfile(test_user=USER_TESTS)
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)

    def test_a_bad_file_is_a_setup_error_naming_the_key(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(INI)
        pytester.makeconftest(CONFTEST)
        (pytester.path / "entities.toml").write_text("[queues.once]\nmax_delivery_count = 0\n")
        pytester.makepyfile("def test_it(geobus_namespace):\n    pass\n")
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            ["*queues.once.max_delivery_count: must be at least 1*entities.toml*"]
        )
