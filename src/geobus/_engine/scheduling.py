"""Scheduling and cancelling scheduled messages on both namespaces.

Neither is ever buffered: a schedule needs each namespace's sequence numbers, and
a cancellation names them. ``ReplicatedSender`` documents both calls; this module
holds how they reach the namespaces through the sender's ``Replicator``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage

from .._config import ReplicationMode
from .._decisions.judge import SendJudge
from .._decisions.validate import prepare_message, validate_schedule_time
from .._errors import ReplicationError
from .._models import ScheduledMessage
from .channels import SendChannel
from .payload import Message
from .replicator import Replicator


async def schedule(
    replicator: Replicator,
    judge: SendJudge,
    mode: ReplicationMode,
    messages: Message | Sequence[Message],
    schedule_time_utc: datetime.datetime,
    timeout: float | None,
) -> list[ScheduledMessage]:
    """Schedule ``messages`` where a send in ``mode`` would go; one ``ScheduledMessage`` each."""
    if isinstance(messages, (ServiceBusMessage, AmqpAnnotatedMessage)):
        batch, ids = [messages], [prepare_message(messages)]
    else:
        batch = list(messages)
        ids = [prepare_message(m, field=f"messages[{i}].") for i, m in enumerate(batch)]
    validate_schedule_time(schedule_time_utc)
    deadline = replicator.begin(timeout)
    numbers: dict[str, list[int]] = {}

    async def call(channel: SendChannel, seconds: float) -> None:
        numbers[channel.name] = await channel.schedule(batch, schedule_time_utc, timeout=seconds)

    if mode == ReplicationMode.PASSIVE:
        await replicator.passive(call, deadline, messages=len(batch), judge=judge)
    else:
        results = await replicator.concurrently(call, deadline, messages=len(batch))
        replicator.noted(judge.active(results), "are missing")
    return [
        ScheduledMessage(message_id, {name: seqs[i] for name, seqs in numbers.items()})
        for i, message_id in enumerate(ids)
    ]


async def cancel(
    replicator: Replicator,
    sequence_numbers: ScheduledMessage | Sequence[ScheduledMessage],
    timeout: float | None,
) -> None:
    """Cancel each ``ScheduledMessage`` on every namespace that holds it.

    Raises:
        TypeError: an item is not a ``ScheduledMessage`` (a bare int names a message
            in one namespace only).
        ReplicationError: a namespace could not be reached; ``landed`` names those
            where the cancellation did happen.
    """
    given: list[Any] = (
        [sequence_numbers] if isinstance(sequence_numbers, (ScheduledMessage, int)) else list(sequence_numbers)
    )
    items: list[ScheduledMessage] = []
    for item in given:
        if not isinstance(item, ScheduledMessage):
            raise TypeError(
                f"cannot cancel {type(item).__name__}: a sequence number names a message in one namespace; "
                "pass the ScheduledMessage objects schedule_messages returned, which hold both namespaces' numbers"
            )
        items.append(item)
    per_namespace: dict[str, list[int]] = {}
    for item in items:
        for name, seq in item.sequence_numbers.items():
            per_namespace.setdefault(name, []).append(seq)
    deadline = replicator.begin(timeout)

    async def call(channel: SendChannel, seconds: float) -> None:
        await channel.cancel_scheduled(per_namespace[channel.name], timeout=seconds)

    names = [name for name in per_namespace if name in replicator.names]
    results = await replicator.concurrently(call, deadline, names)
    failed = {name: error for name, error in results.items() if isinstance(error, Exception)}
    if failed:
        landed = [name for name in names if name not in failed]
        raise ReplicationError("cancellation did not reach every namespace", causes=failed, landed=landed)
