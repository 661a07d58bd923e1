"""Replication decisions, without I/O: which namespace, when to swap, what a result means.

The async sender carries these out; unit tests drive them directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusError,
)

from ._config import WriteQuorum
from ._errors import NamespaceTimeoutError, NamespaceUnavailableError, ReplicationError

# The message or the caller is wrong: another namespace would refuse it the same way.
_REJECTIONS: tuple[type[BaseException], ...] = (
    MessageSizeExceededError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    MessagingEntityNotFoundError,
    MessagingEntityDisabledError,
    ValueError,
    TypeError,
)


# Conditions the SDK raises as a plain ServiceBusError although the message, not the
# namespace, is at fault: another namespace would refuse it the same way.
_MESSAGE_FAULT_CONDITIONS = frozenset(
    {
        "amqp:not-allowed",
        "amqp:not-implemented",
        "amqp:decode-error",
        "amqp:invalid-field",
        "com.microsoft:argument-error",
        "com.microsoft:argument-out-of-range",
    }
)


def _faulted_by_condition(exc: BaseException) -> bool:
    """A plain ServiceBusError whose AMQP condition blames the message."""
    if type(exc) is not ServiceBusError:
        return False
    condition = getattr(exc, "_condition", None)
    if isinstance(condition, bytes):
        condition = condition.decode("utf-8", "replace")
    return str(condition) in _MESSAGE_FAULT_CONDITIONS


def is_availability_error(exc: BaseException) -> bool:
    """True when ``exc`` says the namespace may be unavailable, so another may take the message.

    Connection, communication, timeout and server-busy errors (after the SDK's own
    retries), quota exceeded, geobus's own deadline, and any other Service Bus
    error the SDK could not name are availability errors. Bad input, a message
    too large, authentication/authorization and a missing or disabled entity are
    not: they are the caller's to fix, and failing over would not help.
    """
    if isinstance(exc, _REJECTIONS):
        return False
    if _faulted_by_condition(exc):
        return False
    return isinstance(
        exc,
        (
            ServiceBusError,
            NamespaceTimeoutError,
            NamespaceUnavailableError,
            asyncio.TimeoutError,
            TimeoutError,
            ConnectionError,
            OSError,
        ),
    )


class PassiveRoles:
    """Which namespace is active in passive mode. Not thread-safe: one event loop owns it."""

    def __init__(self, names: Sequence[str], *, active: str | None = None) -> None:
        if len(names) != 2 or names[0] == names[1]:
            raise ValueError("passive replication needs two distinct namespace names")
        self.names = tuple(names)
        self.active = active if active is not None else names[0]
        if self.active not in self.names:
            raise ValueError(f"unknown namespace {self.active!r}")

    @property
    def standby(self) -> str:
        return self.names[1] if self.active == self.names[0] else self.names[0]

    def order(self) -> tuple[str, str]:
        """The namespaces to try, in order: active first."""
        return (self.active, self.standby)

    def succeeded_on(self, name: str) -> bool:
        """Record that ``name`` took a send; True if that swapped the roles."""
        if name == self.active:
            return False
        self.active = name
        return True


@dataclass(frozen=True)
class SendResult:
    """What ``send_messages`` did.

    ``landed``: the namespaces that stored the message(s); ``missed``: those that
    did not, with their errors; ``failed_over``: passive mode had to use its second
    namespace; ``buffered``: the outbox lanes now keeping the message(s) for later
    (``"any"`` in passive mode, the namespaces that missed their copy in active
    mode) — empty when nothing was buffered.
    """

    landed: tuple[str, ...]
    missed: Mapping[str, BaseException]
    failed_over: bool = False
    buffered: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.missed) and bool(self.landed)


# Refused because of one namespace's setup (a rotated key, a missing entity): the other
# namespace may well take the message.
NAMESPACE_REFUSALS: tuple[type[BaseException], ...] = (
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    MessagingEntityNotFoundError,
    MessagingEntityDisabledError,
)

# Refused because of the message itself: no namespace will take it, now or later.
MESSAGE_FAULTS: tuple[type[BaseException], ...] = (MessageSizeExceededError, ValueError, TypeError)


def message_fault(errors: Mapping[str, BaseException]) -> BaseException | None:
    """The first error that blames the message itself (too large, malformed), if any."""
    for error in errors.values():
        if isinstance(error, MESSAGE_FAULTS) or _faulted_by_condition(error):
            return error
    return None


def common_rejection(missed: Mapping[str, BaseException]) -> BaseException | None:
    """The error to raise as it is when every namespace refused a message for the same
    non-availability reason (the caller's mistake, not an outage), else None."""
    rejections = [e for e in missed.values() if not is_availability_error(e)]
    if rejections and len(rejections) == len(missed) and len({type(e) for e in rejections}) == 1:
        return rejections[0]
    return None


def active_outcome(
    quorum: WriteQuorum, results: Mapping[str, BaseException | None]
) -> SendResult:
    """Judge the concurrent sends of active mode.

    Raises:
        BaseException: the error itself when every namespace rejected the message for the
            same non-availability reason (the caller's mistake, not an outage).
        ReplicationError: the quorum was not met.
    """
    landed = tuple(name for name, error in results.items() if error is None)
    missed = {name: error for name, error in results.items() if error is not None}
    if not landed:
        rejection = common_rejection(missed)
        if rejection is not None:
            raise rejection
        raise ReplicationError("no namespace took the message", causes=missed)
    if missed and quorum == WriteQuorum.ALL:
        raise ReplicationError(
            "write quorum 'all' not met", causes=missed, landed=landed
        )
    return SendResult(landed=landed, missed=missed)
