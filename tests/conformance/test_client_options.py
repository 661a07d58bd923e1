"""SDK client options through geobus against real local namespaces: they reach the SDK."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from azure.servicebus import ServiceBusMessage

import geobus
from geobus.local import LocalNamespace
from geobus.testing import NamespacePair

from .programs import WAIT


class TestLoggingEnable:
    """``logging_enable=True`` turns on the SDK's frame trace, and the trace carries no key."""

    def test_trace_is_written_without_a_key(
        self, namespace_factory: Callable[..., LocalNamespace], caplog: pytest.LogCaptureFixture
    ) -> None:
        pair = NamespacePair(namespace_factory(), namespace_factory())
        caplog.set_level(logging.DEBUG, logger="azure.servicebus")
        with geobus.GeoServiceBusClient.from_connection_strings(*pair.connection_strings, logging_enable=True) as client:
            with client.get_queue_sender("orders", client_identifier="trace-test") as sender:
                sender.send_messages(ServiceBusMessage("traced"))
            with client.get_queue_receiver("orders", max_wait_time=WAIT) as receiver:
                received = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
                for message in received:
                    receiver.complete_message(message)
        assert [b"".join(m.body) for m in received] == [b"traced"]
        trace = [r for r in caplog.records if r.name.startswith("azure.servicebus._pyamqp")]
        assert any("AttachFrame" in r.getMessage() for r in trace)
        assert any("trace-test" in r.getMessage() for r in trace)  # the identifier reached the SDK sender
        keys = [cs.split("SharedAccessKey=")[1].split(";")[0] for cs in pair.connection_strings]
        leaked = [r.name for r in caplog.records for key in keys if key in r.getMessage()]
        assert not leaked, "a namespace key was logged"

    def test_without_it_there_is_no_trace(
        self, namespace_factory: Callable[..., LocalNamespace], caplog: pytest.LogCaptureFixture
    ) -> None:
        pair = NamespacePair(namespace_factory(), namespace_factory())
        caplog.set_level(logging.DEBUG, logger="azure.servicebus")
        with geobus.GeoServiceBusClient.from_connection_strings(*pair.connection_strings) as client:
            with client.get_queue_sender("orders") as sender:
                sender.send_messages(ServiceBusMessage("quiet"))
        assert not any("AttachFrame" in r.getMessage() for r in caplog.records)
