"""The sync sender's fast lane with the real azure-servicebus client against local namespaces: its
sends go straight from the caller's thread once that thread's link is open, and a namespace that
black-holes its traffic under that link (where the sync SDK alone would block) still answers
within the deadline, failing over."""

from __future__ import annotations

import time

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

import geobus
from geobus._sync.fast_lane import socket_of
from geobus.testing import NamespacePair

from .helpers import ATTEMPT, FAST, MARGIN, QUEUE, SEND, message


def warm_lane(sender: geobus.ReplicatedSender, first: int = 0) -> int:
    """Send from this thread until a send went straight through the fast lane (its link is
    opened aside after the first); the next message's number."""
    lane = sender._lane
    assert lane is not None
    n = first
    deadline = time.monotonic() + 10
    while lane.direct == 0:
        assert time.monotonic() < deadline, "no send went through the fast lane within 10 s"
        assert sender.send_messages(message(n)).landed == ("primary",)
        n += 1
    return n


def test_the_watchdog_finds_the_sync_sdks_socket(pair: NamespacePair) -> None:
    # The fast lane's deadline rests on reaching this socket: an SDK that hid it must fail here.
    with ServiceBusClient.from_connection_string(pair.connection_strings[0]) as client:
        with client.get_queue_sender(QUEUE) as sender:
            assert socket_of(sender) is not None
            sender.send_messages(ServiceBusMessage(b"x"))
            assert socket_of(sender) is not None


@pytest.mark.timeout(60)
def test_sends_go_straight_from_the_callers_thread_and_each_lands_once(pair: NamespacePair) -> None:
    with geobus.GeoServiceBusClient(pair.config(mode="passive", **FAST)) as client:
        with client.get_queue_sender(QUEUE) as sender:
            n = warm_lane(sender)
            for i in range(n, n + 20):
                assert sender.send_messages(message(i)).landed == ("primary",)
            stats = sender.stats
            direct = sender._lane.direct if sender._lane else 0
    assert direct >= 20
    assert stats.messages_sent == {"primary": n + 20, "secondary": 0}
    assert pair.primary.counts() == {QUEUE: n + 20} and pair.secondary.counts() == {}


@pytest.mark.timeout(60)
def test_a_black_hole_under_the_direct_link_fails_over_within_the_deadline(pair: NamespacePair) -> None:
    with geobus.GeoServiceBusClient(pair.config(mode="passive", **FAST)) as client:
        with client.get_queue_sender(QUEUE) as sender:
            n = warm_lane(sender)
            pair.primary.black_hole()
            try:
                started = time.monotonic()
                result = sender.send_messages(message(n))
                took = time.monotonic() - started
                after = sender.send_messages(message(n + 1))
            finally:
                pair.primary.heal()
            stats = sender.stats
    assert took < SEND + MARGIN, f"the send took {took:.1f} s, its deadline is {SEND} s"
    assert result.landed == ("secondary",) and result.failed_over
    assert isinstance(result.missed["primary"], geobus.NamespaceTimeoutError)
    assert took >= ATTEMPT * 0.9, "the primary's attempt was not waited for: not the black hole's answer"
    assert after.landed == ("secondary",) and stats.failovers == 1 and stats.send_failures["primary"] == 1
