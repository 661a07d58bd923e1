"""Programs written for azure-servicebus (sync), in the style of its published samples.

Each takes a client and the entity names and uses nothing but the SDK's surface: the
conformance test runs it with ``ServiceBusClient.from_connection_string`` and with
``GeoServiceBusClient.from_connection_strings``, and compares what it returns. The
async twins are in ``programs_async.py``, one for one.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
)

WAIT = 2.0  # seconds a receive waits for the first message: long enough on two busy cores
SCHEDULE_IN = datetime.timedelta(seconds=1)
SESSION = "session-a"
# The slow queue's lock, which the test declares so. Not shorter: the SDK's async
# AutoLockRenewer checks once a second and renews a short lock only in its last
# 75 % of whole seconds left, so it loses a 2 s lock even with the plain SDK.
LOCK_DURATION = 4
HOLD_STEP, HOLD_STEPS = 0.1, 200  # a slow handler waits in steps, bounded to 20 s


def held_past(first_lock: datetime.datetime) -> datetime.datetime:
    """When a slow handler may stop holding a message whose lock first ran to ``first_lock``:
    had nothing renewed it, its lock would have run out twice by then."""
    return first_lock + datetime.timedelta(seconds=LOCK_DURATION)


def text(message: ServiceBusReceivedMessage) -> str:
    return b"".join(message.body).decode()


def drain(receiver: Any, *, settle: str = "complete") -> list[str]:
    """Receive until a receive comes back empty, settling each message; bounded."""
    bodies: list[str] = []
    for _ in range(100):
        batch = receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
        if not batch:
            break
        for message in batch:
            bodies.append(text(message))
            if settle == "complete":
                receiver.complete_message(message)
    return sorted(bodies)


def send_queue(client: Any, queue: str, **_: Any) -> list[str]:
    """One message, a list, a batch; then a worker completes them all."""
    with client:
        with client.get_queue_sender(queue_name=queue) as sender:
            sender.send_messages(ServiceBusMessage("single"))
            sender.send_messages([ServiceBusMessage(f"list-{n}") for n in range(3)])
            batch = sender.create_message_batch()
            for n in range(3):
                batch.add_message(ServiceBusMessage(f"batch-{n}"))
            sender.send_messages(batch)
        with client.get_queue_receiver(queue_name=queue, max_wait_time=WAIT) as receiver:
            return drain(receiver)


def send_topic(client: Any, topic: str, subscription: str, **_: Any) -> list[str]:
    """Send to a topic, receive from its subscription."""
    with client:
        with client.get_topic_sender(topic_name=topic) as sender:
            sender.send_messages([ServiceBusMessage(f"event-{n}") for n in range(4)])
        with client.get_subscription_receiver(topic_name=topic, subscription_name=subscription) as receiver:
            return drain(receiver)


def receive_iterator(client: Any, queue: str, **_: Any) -> list[str]:
    """A worker that iterates the receiver until it is idle for max_wait_time."""
    with client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(f"it-{n}") for n in range(5)])
        seen: list[str] = []
        with client.get_queue_receiver(queue, max_wait_time=WAIT, prefetch_count=10) as receiver:
            for message in receiver:
                seen.append(text(message))
                receiver.complete_message(message)
        return sorted(seen)


def schedule_and_cancel(client: Any, queue: str, **_: Any) -> list[str]:
    """Schedule one message and a list, cancel the list; only the first ever arrives."""
    with client:
        with client.get_queue_sender(queue) as sender:
            when = datetime.datetime.now(datetime.timezone.utc) + SCHEDULE_IN
            kept = sender.schedule_messages(ServiceBusMessage("kept"), when)
            dropped = sender.schedule_messages([ServiceBusMessage("dropped-0"), ServiceBusMessage("dropped-1")], when)
            sender.cancel_scheduled_messages(dropped)
            assert len(kept) == 1 and len(dropped) == 2
        with client.get_queue_receiver(queue) as receiver:
            return drain(receiver)


def receive_and_delete(client: Any, queue: str, **_: Any) -> list[str]:
    """RECEIVE_AND_DELETE, named by its string value: nothing to settle, nothing comes back."""
    with client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(f"rd-{n}") for n in range(3)])
        with client.get_queue_receiver(queue, receive_mode="receiveanddelete") as receiver:
            first = drain(receiver, settle="none")
        with client.get_queue_receiver(queue) as receiver:
            return [*first, "-- then --", *drain(receiver)]


def abandon_then_complete(client: Any, queue: str, **_: Any) -> list[str]:
    """An abandoned message comes back; the worker completes it the second time."""
    with client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("retry-me"))
        seen: list[str] = []
        with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
            for message in receiver:
                seen.append(text(message))
                if len(seen) == 1:
                    receiver.abandon_message(message)
                else:
                    receiver.complete_message(message)
        return seen


def peek(client: Any, queue: str, **_: Any) -> list[str]:
    """Peek browses without taking a lock: the messages are still there to receive."""
    with client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(f"peek-{n}") for n in range(3)])
        with client.get_queue_receiver(queue) as receiver:
            peeked = sorted(text(m) for m in receiver.peek_messages(max_message_count=10))
            return [*peeked, "-- then --", *drain(receiver)]


def deferral(client: Any, queue: str, **_: Any) -> list[str]:
    """Defer every message, then receive them by sequence number and complete them."""
    with client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(f"defer-{n}") for n in range(3)])
        with client.get_queue_receiver(queue) as receiver:
            numbers = []
            for _ in range(100):
                batch = receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
                if not batch:
                    break
                for message in batch:
                    numbers.append(message.sequence_number)
                    receiver.defer_message(message)
            deferred = receiver.receive_deferred_messages(sequence_numbers=numbers)
            for message in deferred:
                receiver.complete_message(message)
            return [*sorted(text(m) for m in deferred), "-- then --", *drain(receiver)]


def dead_letters(client: Any, queue: str, **_: Any) -> list[str]:
    """Dead-letter every message with a reason; a second worker reads the dead-letter queue."""
    with client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(f"bad-{n}") for n in range(3)])
        with client.get_queue_receiver(queue) as receiver:
            for _ in range(100):
                batch = receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
                if not batch:
                    break
                for message in batch:
                    receiver.dead_letter_message(message, reason="poison", error_description="cannot parse")
        found: list[str] = []
        with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
            for _ in range(100):
                batch = receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
                if not batch:
                    break
                for message in batch:
                    found.append(f"{text(message)}:{message.dead_letter_reason}:{message.dead_letter_error_description}")
                    receiver.complete_message(message)
        return sorted(found)


def sessions(client: Any, session_queue: str, **_: Any) -> list[str]:
    """Send to a session, receive it in order with a session receiver, keep its state."""
    with client:
        with client.get_queue_sender(session_queue) as sender:
            sender.send_messages([ServiceBusMessage(f"step-{n}", session_id=SESSION) for n in range(4)])
        with client.get_queue_receiver(session_queue, session_id=SESSION, max_wait_time=WAIT) as receiver:
            session = receiver.session
            session.set_state("started")
            seen = [f"{session.session_id}:{session.get_state().decode()}"]
            for message in receiver:
                seen.append(text(message))
                receiver.complete_message(message)
                session.renew_lock()
            return seen  # in order: not sorted


def auto_lock_renew(client: Any, slow_queue: str, **_: Any) -> list[str]:
    """An AutoLockRenewer keeps a message's lock while a slow handler holds it past its
    lock duration; the handler never renews by hand, and completes it in the end."""
    renewer = AutoLockRenewer()
    try:
        with client:
            with client.get_queue_sender(slow_queue) as sender:
                sender.send_messages(ServiceBusMessage("slow"))
            with client.get_queue_receiver(slow_queue, auto_lock_renewer=renewer, max_wait_time=WAIT) as receiver:
                seen = []
                for message in receiver:
                    first_lock = message.locked_until_utc
                    held_until = held_past(first_lock)
                    for _ in range(HOLD_STEPS):  # the slow handler: bounded, whatever the clock does
                        if datetime.datetime.now(datetime.timezone.utc) >= held_until:
                            break
                        time.sleep(HOLD_STEP)
                    renewed = message.locked_until_utc > first_lock
                    receiver.complete_message(message)  # raises MessageLockLostError if the lock was lost
                    seen.append(f"{text(message)}:renewed={renewed}")
                return seen
    finally:
        renewer.close()


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
