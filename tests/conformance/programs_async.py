"""The async twins of ``programs.py``: programs written for ``azure.servicebus.aio``.

Each does what its sync namesake does, through ``async with``, ``await`` and ``async for``.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import AutoLockRenewer

from .programs import HOLD_STEP, HOLD_STEPS, SCHEDULE_IN, SESSION, WAIT, held_past, text


async def drain(receiver: Any, *, settle: str = "complete") -> list[str]:
    """Receive until a receive comes back empty, settling each message; bounded."""
    bodies: list[str] = []
    for _ in range(100):
        batch = await receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
        if not batch:
            break
        for message in batch:
            bodies.append(text(message))
            if settle == "complete":
                await receiver.complete_message(message)
    return sorted(bodies)


async def send_queue(client: Any, queue: str, **_: Any) -> list[str]:
    """One message, a list, a batch; then a worker completes them all."""
    async with client:
        async with client.get_queue_sender(queue_name=queue) as sender:
            await sender.send_messages(ServiceBusMessage("single"))
            await sender.send_messages([ServiceBusMessage(f"list-{n}") for n in range(3)])
            batch = await sender.create_message_batch()
            for n in range(3):
                batch.add_message(ServiceBusMessage(f"batch-{n}"))
            await sender.send_messages(batch)
        async with client.get_queue_receiver(queue_name=queue, max_wait_time=WAIT) as receiver:
            return await drain(receiver)


async def send_topic(client: Any, topic: str, subscription: str, **_: Any) -> list[str]:
    """Send to a topic, receive from its subscription."""
    async with client:
        async with client.get_topic_sender(topic_name=topic) as sender:
            await sender.send_messages([ServiceBusMessage(f"event-{n}") for n in range(4)])
        async with client.get_subscription_receiver(topic_name=topic, subscription_name=subscription) as receiver:
            return await drain(receiver)


async def receive_iterator(client: Any, queue: str, **_: Any) -> list[str]:
    """A worker that iterates the receiver until it is idle for max_wait_time."""
    async with client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"it-{n}") for n in range(5)])
        seen: list[str] = []
        async with client.get_queue_receiver(queue, max_wait_time=WAIT, prefetch_count=10) as receiver:
            async for message in receiver:
                seen.append(text(message))
                await receiver.complete_message(message)
        return sorted(seen)


async def schedule_and_cancel(client: Any, queue: str, **_: Any) -> list[str]:
    """Schedule one message and a list, cancel the list; only the first ever arrives."""
    async with client:
        async with client.get_queue_sender(queue) as sender:
            when = datetime.datetime.now(datetime.timezone.utc) + SCHEDULE_IN
            kept = await sender.schedule_messages(ServiceBusMessage("kept"), when)
            dropped = await sender.schedule_messages([ServiceBusMessage("dropped-0"), ServiceBusMessage("dropped-1")], when)
            await sender.cancel_scheduled_messages(dropped)
            assert len(kept) == 1 and len(dropped) == 2
        async with client.get_queue_receiver(queue) as receiver:
            return await drain(receiver)


async def receive_and_delete(client: Any, queue: str, **_: Any) -> list[str]:
    """RECEIVE_AND_DELETE, named by its string value: nothing to settle, nothing comes back."""
    async with client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"rd-{n}") for n in range(3)])
        async with client.get_queue_receiver(queue, receive_mode="receiveanddelete") as receiver:
            first = await drain(receiver, settle="none")
        async with client.get_queue_receiver(queue) as receiver:
            return [*first, "-- then --", *(await drain(receiver))]


async def abandon_then_complete(client: Any, queue: str, **_: Any) -> list[str]:
    """An abandoned message comes back; the worker completes it the second time."""
    async with client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage("retry-me"))
        seen: list[str] = []
        async with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
            async for message in receiver:
                seen.append(text(message))
                if len(seen) == 1:
                    await receiver.abandon_message(message)
                else:
                    await receiver.complete_message(message)
        return seen


async def peek(client: Any, queue: str, **_: Any) -> list[str]:
    """Peek browses without taking a lock: the messages are still there to receive."""
    async with client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"peek-{n}") for n in range(3)])
        async with client.get_queue_receiver(queue) as receiver:
            peeked = sorted(text(m) for m in await receiver.peek_messages(max_message_count=10))
            return [*peeked, "-- then --", *(await drain(receiver))]


async def deferral(client: Any, queue: str, **_: Any) -> list[str]:
    """Defer every message, then receive them by sequence number and complete them."""
    async with client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"defer-{n}") for n in range(3)])
        async with client.get_queue_receiver(queue) as receiver:
            numbers = []
            for _ in range(100):
                batch = await receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
                if not batch:
                    break
                for message in batch:
                    numbers.append(message.sequence_number)
                    await receiver.defer_message(message)
            deferred = await receiver.receive_deferred_messages(sequence_numbers=numbers)
            for message in deferred:
                await receiver.complete_message(message)
            return [*sorted(text(m) for m in deferred), "-- then --", *(await drain(receiver))]


async def dead_letters(client: Any, queue: str, **_: Any) -> list[str]:
    """Dead-letter every message with a reason; a second worker reads the dead-letter queue."""
    async with client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"bad-{n}") for n in range(3)])
        async with client.get_queue_receiver(queue) as receiver:
            for _ in range(100):
                batch = await receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
                if not batch:
                    break
                for message in batch:
                    await receiver.dead_letter_message(message, reason="poison", error_description="cannot parse")
        found: list[str] = []
        async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
            for _ in range(100):
                batch = await receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
                if not batch:
                    break
                for message in batch:
                    found.append(f"{text(message)}:{message.dead_letter_reason}:{message.dead_letter_error_description}")
                    await receiver.complete_message(message)
        return sorted(found)


async def sessions(client: Any, session_queue: str, **_: Any) -> list[str]:
    """Send to a session, receive it in order with a session receiver, keep its state."""
    async with client:
        async with client.get_queue_sender(session_queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"step-{n}", session_id=SESSION) for n in range(4)])
        async with client.get_queue_receiver(session_queue, session_id=SESSION, max_wait_time=WAIT) as receiver:
            session = receiver.session
            await session.set_state("started")
            seen = [f"{session.session_id}:{(await session.get_state()).decode()}"]
            async for message in receiver:
                seen.append(text(message))
                await receiver.complete_message(message)
                await session.renew_lock()
            return seen  # in order: not sorted


async def auto_lock_renew(client: Any, slow_queue: str, **_: Any) -> list[str]:
    """An AutoLockRenewer keeps a message's lock while a slow handler holds it past its
    lock duration; the handler never renews by hand, and completes it in the end."""
    renewer = AutoLockRenewer()
    try:
        async with client:
            async with client.get_queue_sender(slow_queue) as sender:
                await sender.send_messages(ServiceBusMessage("slow"))
            async with client.get_queue_receiver(
                slow_queue, auto_lock_renewer=renewer, max_wait_time=WAIT
            ) as receiver:
                seen = []
                async for message in receiver:
                    first_lock = message.locked_until_utc
                    held_until = held_past(first_lock)
                    for _ in range(HOLD_STEPS):  # the slow handler: bounded, whatever the clock does
                        if datetime.datetime.now(datetime.timezone.utc) >= held_until:
                            break
                        await asyncio.sleep(HOLD_STEP)
                    renewed = message.locked_until_utc > first_lock
                    await receiver.complete_message(message)  # raises MessageLockLostError if the lock was lost
                    seen.append(f"{text(message)}:renewed={renewed}")
                return seen
    finally:
        await renewer.close()


PROGRAMS = {
    "send_queue": send_queue,
    "send_topic": send_topic,
    "receive_iterator": receive_iterator,
    "schedule_and_cancel": schedule_and_cancel,
    "receive_and_delete": receive_and_delete,
    "abandon_then_complete": abandon_then_complete,
    "peek": peek,
    "deferral": deferral,
    "dead_letters": dead_letters,
    "sessions": sessions,
    "auto_lock_renew": auto_lock_renew,
}
