"""Bad input is never an outage: the real SDK, two local namespaces, the sync and async APIs.

A message with a field the SDK cannot encode is refused with a ``TypeError`` or
``ValueError`` naming the field, before either namespace is tried; what the SDK's
encoder refuses (validation bypassed here) is raised as the SDK raises it. In
every mode, with and without an outbox: no failover, both circuit breakers stay
closed (more bad sends than the breaker's threshold of 3), nothing is buffered,
and the next good message is sent.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

import geobus
import geobus._decisions.validate
from geobus.testing import NamespacePair

from .drivers import Driver
from .helpers import FAST, QUEUE, depth, message

pytestmark = pytest.mark.timeout(60)

MODES: dict[str, dict[str, Any]] = {
    "passive": {"mode": "passive"},
    "active-any": {"mode": "active", "write_quorum": "any"},
    "active-all": {"mode": "active", "write_quorum": "all"},
}


def _bad(**fields: Any) -> Callable[[], ServiceBusMessage]:
    return lambda: ServiceBusMessage("x", **{"message_id": "bad", **fields})


BAD: list[tuple[Callable[[], ServiceBusMessage], type[Exception], str]] = [
    (_bad(message_id=3.5), TypeError, r"message_id: float"),
    (_bad(message_id=object()), TypeError, r"message_id: object"),
    (_bad(correlation_id=2.5), TypeError, r"correlation_id: float"),
    (_bad(message_id=2**64), ValueError, r"message_id: int outside"),
    (_bad(application_properties={"colours": {"red"}}), TypeError, r"application_properties\['colours'\]: set"),
    (_bad(application_properties={"n": 2**40}), ValueError, r"application_properties\['n'\]: int outside"),
    (_bad(time_to_live=datetime.timedelta(days=60)), ValueError, r"time_to_live: 60 days"),
]


def _options(mode: str, outbox: bool, tmp_path: Path) -> dict[str, Any]:
    options = {**FAST, **MODES[mode]}
    if outbox:
        options["outbox"] = geobus.OutboxPolicy(path=str(tmp_path / "outbox.db"))
    return options


def _landed(mode: str) -> tuple[str, ...]:
    return ("primary",) if mode == "passive" else ("primary", "secondary")


@pytest.mark.parametrize("outbox", [False, True], ids=["", "outbox"])
@pytest.mark.parametrize("mode", list(MODES))
async def test_refused_naming_the_field_and_the_next_message_is_sent(
    driver: Driver, pair: NamespacePair, tmp_path: Path, mode: str, outbox: bool
) -> None:
    async with driver.client(pair.config(**_options(mode, outbox, tmp_path))) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            for make, error, field in BAD:
                with pytest.raises(error, match=f"^{field}"):
                    await sender.send_messages(make())
                with pytest.raises(error, match=rf"^messages\[1\]\.{field}"):
                    await sender.send_messages([message(0, "never"), make()])
            refused = sender.stats
            result = await sender.send_messages(message(1, "good"))
    assert refused.breakers == {"primary": "closed", "secondary": "closed"}
    assert refused.messages_sent == {"primary": 0, "secondary": 0} and refused.send_failures == {"primary": 0, "secondary": 0}
    assert (refused.failovers, refused.buffered, refused.outbox_depth) == (0, 0, 0)
    assert result.landed == _landed(mode) and result.buffered == ()
    assert depth(pair) == {name: int(name in result.landed) for name in ("primary", "secondary")}


@pytest.mark.parametrize("outbox", [False, True], ids=["", "outbox"])
@pytest.mark.parametrize("mode", list(MODES))
async def test_what_the_sdks_encoder_refuses_is_the_messages_fault(
    driver: Driver,
    pair: NamespacePair,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    outbox: bool,
) -> None:
    # Without geobus's validation the SDK meets the float id in its encoder and raises a plain
    # ServiceBusError("Handler failed: ... Unsupported Message ID type"): read by its cause.
    monkeypatch.setattr(geobus._decisions.validate, "validate_message", lambda message, field="": "unchecked")
    # The SDK closes its link after such an error and opens it again on the next send, about a
    # second against the local namespace: within the attempt deadline, or it reads as a timeout.
    options = {**_options(mode, outbox, tmp_path), "deadlines": geobus.Deadlines(attempt=5.0, send=10.0)}
    async with driver.client(pair.config(**options)) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            for _ in range(4):
                with pytest.raises(ServiceBusError, match="Unsupported Message ID type") as caught:
                    await sender.send_messages(ServiceBusMessage("x", message_id=3.5))
                assert type(caught.value) is ServiceBusError and isinstance(caught.value.__context__, TypeError)
            refused = sender.stats
            result = await sender.send_messages(message(1, "good"))
    assert refused.breakers == {"primary": "closed", "secondary": "closed"}
    assert (refused.failovers, refused.buffered, refused.outbox_depth) == (0, 0, 0)
    assert refused.active_namespace == "primary"
    if mode == "passive":
        assert refused.send_failures == {"primary": 4, "secondary": 0}  # the secondary never tried
    assert result.landed == _landed(mode)
    assert depth(pair) == {name: int(name in result.landed) for name in ("primary", "secondary")}
