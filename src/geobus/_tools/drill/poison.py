"""The ``poison`` scenario: one message whose handler kills its worker, every time.

Two workers share a SQLite seen-set. The handler of message ``POISON`` kills its
own process (kill -9: nothing settled, its locks run out); the scenario, as a
supervisor would, starts a new worker for each one that died. The namespaces'
queues dead-letter a message after ``MAX_DELIVERY_COUNT`` deliveries with
``LOCK_DURATION``-second locks, so each copy of the poison (one in passive mode,
one per region in active mode) ends in its region's dead-letter queue after a
few deaths. The run keeps its promises when each region the poison landed in
holds it, and only it, in its dead-letter queue (read with the SDK), every other
message reached a handler once (the drill's ledger), and the fleet went on
delivering after the first death.

A worker reads both regions at once: while its handler runs on one region's copy,
the other region's pump may have fetched the next message there, and that copy's
lock runs out with the worker too. A message fetched that way by every worker the
poison killed is dead-lettered in that region as well, though its twin reached a
handler once: the run reports it (a cost of fetching ahead, as with the SDK's
prefetch) and fails only for a dead-lettered message no handler got.

Each worker fetches one message per namespace at a time (``--prefetch 1``) and
takes one message per receive call (``--batch 1``): messages fetched or handed
out alongside the poison die with the worker too, their locks run out and their
delivery counts grow. A worker that took the poison in a batch would take the
batch's other messages down with it at every death: after three deaths, both
copies of a neighbour handed out in the poison's batches sit in the dead-letter
queues and no handler ever got it. That holds for the SDK's own receivers
against Service Bus just the same: a handler that can kill its process should
take one message at a time. With one message per call, a death holds at most one
copy of a neighbour: the other region's next one, fetched ahead.
"""

from __future__ import annotations

from collections.abc import Collection

from azure.servicebus import ServiceBusClient, ServiceBusSubQueue

from ...testing._namespaces import ROLES
from .harness import QUEUE, Run

POISON = "m-10"  # the producer's 11th message: every run sends at least 40
MAX_DELIVERY_COUNT = 3
LOCK_DURATION = 2.0  # seconds: each death costs one lock duration
WORKER_ARGS = ("--poison", POISON, "--prefetch", "1", "--batch", "1")
DEAD_LETTER_TIMEOUT = 120.0  # up to MAX_DELIVERY_COUNT deaths per region, each a lock and a start
REASON = "MaxDeliveryCountExceeded"
DELIVERY_TIMEOUT = 30.0  # for the twin of a copy dead-lettered with the poison to reach a handler


def poison(run: Run) -> None:
    """Restart each worker the poison killed until every copy of it is dead-lettered; then judge."""
    if not run.wait_until(lambda: POISON in run.ids("ack"), 30.0, f"{POISON} to be acknowledged"):
        run.violations.append(f"{POISON} was never acknowledged: there was no poison to handle")
        return
    landed = {role for event in run.log.events if event["e"] == "ack" and event["id"] == POISON
              for role in event["landed"]}  # fmt: skip
    deaths: list[float] = []

    def supervise() -> bool:
        for life, worker in enumerate(run.workers):
            if worker.running or worker.killed or not _poisoned(run, life):
                continue  # a worker that died of anything else is the row's failure (its exit status)
            worker.process.wait(15)
            worker.killed = True  # by the scenario's poison: its kill -9 is no failure
            run.worker_died(life)
            deaths.append(run.log.events[-1]["t"])
            run.start_worker()
            run.mark(f"worker {life} killed itself on {POISON}; worker {len(run.workers) - 1} started")
        return _dead_lettered(run, landed)

    if not run.wait_until(supervise, DEAD_LETTER_TIMEOUT, f"{POISON} to be dead-lettered in {sorted(landed)}"):
        run.violations.append(f"{POISON} was not dead-lettered in {sorted(landed)} after {len(deaths)} death(s)")
        return
    held = dead_letters(run)
    first_death = deaths[0] if deaths else float("inf")
    others = {m for role in ROLES for m, reason in held[role] if m != POISON and reason == REASON}
    # A fetched-ahead copy's twin may still be on its way to a handler: give it the time it needs.
    run.wait_until(lambda: others <= _delivered(run), DELIVERY_TIMEOUT, f"the twins of {sorted(others)} to be delivered")
    delivered = _delivered(run)
    after = {e["id"] for e in run.log.events if e["e"] == "deliver" and e["t"] > first_death and e["id"] != POISON}
    twins = sorted({m for role in ROLES for m, _ in held[role] if m != POISON and m in delivered})
    run.mark(
        f"{POISON} dead-lettered after {len(deaths)} worker death(s): "
        + ", ".join(f"{role} {held[role]}" for role in ROLES)
        + f"; {len(after)} other message(s) delivered after the first death"
        + (f"; fetched-ahead copies dead-lettered with it, their twins delivered: {twins}" if twins else "")
    )
    run.violations += verdict(landed, held, len(deaths), len(after), delivered)


def verdict(
    landed: set[str],
    dead_letters: dict[str, list[tuple[str, str | None]]],
    deaths: int,
    delivered_after: int,
    delivered: Collection[str] = (),
) -> list[str]:
    """What broke the scenario's promises, given the regions the poison ``landed`` in, what each
    region's dead-letter queue holds (id, reason), the workers it killed, the other messages
    delivered after the first death, and every message ``delivered`` to a handler. Another
    message's copy dead-lettered for its delivery count while its twin reached a handler is a
    fetched-ahead copy (see the module), not a broken promise. Lost and duplicated messages are
    the ledger's to count."""
    problems = []
    for role in ROLES:
        expected = [(POISON, REASON)] if role in landed else []
        fetched_ahead = [(m, r) for m, r in dead_letters[role] if m != POISON and m in delivered and r == REASON]
        held = [entry for entry in dead_letters[role] if entry not in fetched_ahead]
        if held != expected:
            problems.append(f"the {role}'s dead-letter queue holds {dead_letters[role]}, not {expected}")
    if deaths < MAX_DELIVERY_COUNT:
        problems.append(f"{POISON} killed {deaths} worker(s), fewer than its {MAX_DELIVERY_COUNT} deliveries")
    if not delivered_after:
        problems.append("no other message was delivered after the first death: the fleet stopped")
    return problems


def _delivered(run: Run) -> set[str]:
    return {e["id"] for e in run.log.events if e["e"] == "deliver"}


def _poisoned(run: Run, life: int) -> bool:
    return any(e["e"] == "poisoned" and e["life"] == life for e in run.log.events)


def _dead_lettered(run: Run, landed: set[str]) -> bool:
    """Each region the poison landed in has a message in its queue's dead-letter queue."""
    counts = run.namespaces.counts()
    return all(counts[role].get(f"{QUEUE}/$deadletterqueue", 0) >= 1 for role in landed)


def dead_letters(run: Run) -> dict[str, list[tuple[str, str | None]]]:
    """Per region, the (message id, dead-letter reason) of each message in the drill queue's
    dead-letter queue, read with the SDK's own receiver (peeked: nothing is settled)."""
    held: dict[str, list[tuple[str, str | None]]] = {}
    for role, connection_string in zip(ROLES, run.namespaces.connection_strings, strict=True):
        with ServiceBusClient.from_connection_string(connection_string) as client:
            receiver = client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            with receiver:
                messages = receiver.peek_messages(max_message_count=100)
        held[role] = sorted((str(m.message_id), m.dead_letter_reason) for m in messages)
    return held
