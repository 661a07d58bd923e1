"""Random message fields thrown at a ReplicatedSender over two local namespaces (hypothesis).

Every call either raises ``TypeError``/``ValueError`` before anything is sent, or
the message is delivered with the fields it was sent with (received back with
the real SDK and compared); no namespace ever refuses one, and no breaker opens.
"""

from __future__ import annotations

import calendar
import datetime
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus import ServiceBusReceiver as SdkReceiver
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

import geobus
from geobus._decisions.session_stamps import PRODUCER, SEQUENCE
from geobus.local import LocalNamespace

QUEUE = "orders"
UTC = datetime.timezone.utc
EXAMPLES = 200


@dataclass
class Rig:
    primary: LocalNamespace
    secondary: LocalNamespace
    sender: geobus.ReplicatedSender
    receiver: SdkReceiver


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    """One pair of namespaces, one passive sender, and a plain SDK receiver on the primary."""
    primary, secondary = LocalNamespace().start(), LocalNamespace().start()
    try:
        client = geobus.GeoServiceBusClient.from_connection_strings(
            primary.connection_string, secondary.connection_string, mode="passive"
        )
        reader = ServiceBusClient.from_connection_string(primary.connection_string)
        with client, reader:
            receiver = reader.get_queue_receiver(QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
            with client.get_queue_sender(QUEUE) as sender, receiver:
                yield Rig(primary, secondary, sender, receiver)
    finally:
        primary.stop()
        secondary.stop()


# -- what to throw ----------------------------------------------------------------------------

def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values three times in four: most examples then have every field valid."""
    return st.one_of(valid, valid, valid, invalid)


junk = st.one_of(st.floats(), st.booleans(), st.just(object()), st.lists(st.integers(), max_size=2))
ids = mostly(
    st.one_of(
        st.text(max_size=128),
        st.integers(min_value=0, max_value=2**64 - 1),
        st.sampled_from([0, 2**32, 2**63, 2**64 - 1]),
        st.uuids(),
        st.text(max_size=40).map(str.encode),
    ),
    st.one_of(
        st.text(min_size=129, max_size=140),
        st.sampled_from([-1, 2**64]),
        st.binary(max_size=20),  # often not UTF-8
        junk,
    ),
)
strings = mostly(st.one_of(st.text(max_size=140), st.text(max_size=20).map(str.encode)), st.one_of(st.integers(), junk))
short_strings = mostly(st.text(max_size=128), st.one_of(st.text(min_size=129, max_size=130), st.integers(), junk))
property_values = mostly(
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(max_size=40),
        st.text(max_size=20).map(str.encode),
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.floats(),
        st.uuids(),
        st.datetimes(timezones=st.one_of(st.none(), st.just(UTC))),
    ),
    st.one_of(
        st.integers(min_value=2**31, max_value=2**40),
        st.binary(max_size=8),
        st.decimals(allow_nan=False, places=2),
        st.sets(st.integers(), max_size=2),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    ),
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "message_id": ids,
        "correlation_id": ids,
        "session_id": short_strings,
        "partition_key": st.text(max_size=130),
        "to": strings,
        "reply_to": strings,
        "reply_to_session_id": short_strings,
        "subject": strings,
        "content_type": mostly(st.text(alphabet=st.characters(max_codepoint=127), max_size=40), strings),
        "time_to_live": st.one_of(
            st.integers(min_value=-5, max_value=60 * 86400),
            # around the 2**32-1 ms an AMQP uint holds
            st.sampled_from([0, 1, 4_294_967, 4_294_968, 60 * 86400]),
        ).map(lambda seconds: datetime.timedelta(seconds=seconds)),
        "application_properties": st.dictionaries(
            mostly(st.one_of(st.text(max_size=20), st.text(max_size=8).map(str.encode)), st.integers()),
            property_values,
            max_size=3,
        ),
    },
)
bodies = st.one_of(st.binary(max_size=200), st.text(max_size=200))


# -- what comes back --------------------------------------------------------------------------


def _as_received_text(value: Any) -> Any:
    """A string field as the SDK's received message reads it: bytes that are UTF-8 come back
    as text, other bytes as they are (``ServiceBusReceivedMessage.message_id`` tries to decode)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _as_received_property(value: Any) -> Any:
    """An application property value as the pure-Python transport hands it back."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, datetime.datetime):  # an AMQP timestamp, in milliseconds
        return int(calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond / 1000)
    return value  # bytes were sent as the string they decode to, and come back as bytes


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b and type(a) is type(b))


def _check_delivered(rig: Rig, sent: ServiceBusMessage, body: bytes | str, given_fields: dict[str, Any]) -> None:
    received = rig.receiver.receive_messages(max_message_count=1, max_wait_time=10)
    assert len(received) == 1, "the message was acknowledged but not delivered"
    (got,) = received
    assert b"".join(got.body) == (body.encode() if isinstance(body, str) else body)
    assert got.message_id == _as_received_text(sent.message_id)
    for name in ("correlation_id", "session_id", "partition_key", "to", "reply_to", "reply_to_session_id", "subject", "content_type"):
        if given_fields.get(name) not in (None, "", b""):
            assert getattr(got, name) == _as_received_text(given_fields[name]), name
    ttl = given_fields.get("time_to_live")
    if ttl:
        assert got.time_to_live == datetime.timedelta(seconds=int(ttl.total_seconds()))
    sent_properties = given_fields.get("application_properties") or {}
    got_properties = dict(got.application_properties or {})
    if given_fields.get("session_id"):
        # A session message carries the sender's order stamp besides the application's own.
        stamp = {PRODUCER.encode(), SEQUENCE.encode()}
        assert stamp <= set(got_properties), "a session message lacks geobus's order stamp"
        got_properties = {k: v for k, v in got_properties.items() if k not in stamp}
    expected = {(k.encode() if isinstance(k, str) else k): _as_received_property(v) for k, v in sent_properties.items()}
    assert set(got_properties) == set(expected)
    for key, value in expected.items():
        assert _same(got_properties[key], value), (key, got_properties[key], value)


@pytest.mark.timeout(110)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # explaining a failure takes about a minute
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=bodies, given_fields=fields)
@example(body=b"", given_fields={"message_id": b"\x80"})  # bytes that are not UTF-8 come back as bytes
def test_refused_before_sending_or_delivered_as_sent(rig: Rig, body: bytes | str, given_fields: dict[str, Any]) -> None:
    before = rig.sender.stats
    try:
        sent = ServiceBusMessage(body, **given_fields)  # the SDK's setters refuse some values themselves
        result = rig.sender.send_messages(sent)
    except (TypeError, ValueError) as refused:
        event(f"refused: {type(refused).__name__}")
        after = rig.sender.stats
        assert after.messages_sent == before.messages_sent, "refused, but only after a namespace was tried"
        assert after.send_failures == before.send_failures
    else:
        event("delivered")
        assert result.landed == ("primary",) and not result.missed
        _check_delivered(rig, sent, body, given_fields)
    stats = rig.sender.stats
    assert stats.breakers == {"primary": "closed", "secondary": "closed"}
    assert stats.failovers == 0 and stats.send_failures == {"primary": 0, "secondary": 0}
    assert rig.secondary.counts().get(QUEUE, 0) == 0


def test_uuid_ids_are_kept(rig: Rig) -> None:
    """A sanity example outside hypothesis: a uuid id comes back as that uuid."""
    message_id = uuid.uuid4()
    rig.sender.send_messages(ServiceBusMessage(b"x", message_id=message_id))
    (got,) = rig.receiver.receive_messages(max_message_count=1, max_wait_time=10)
    assert got.message_id == message_id
