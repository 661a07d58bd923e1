"""What an error from a namespace means: the one table geobus reads it by, without I/O.

Every error a send, a schedule or a drain meets is one of four kinds:

``MESSAGE``
    The message's own fault (it cannot be encoded, it is too large, the
    service refused its content). Another namespace would refuse it the same
    way: raised unchanged, no failover, breakers untouched, never buffered.
``NAMESPACE_REFUSAL``
    One namespace's own setup refused it (a rotated key, a missing claim, a
    missing or disabled entity). Raised unchanged by a send; the outbox's
    drainer takes the message to the other namespace instead.
``AVAILABILITY``
    The namespace could not be reached or did not answer in time (connection,
    communication, timeouts, busy, full, a breaker held open, an operator's
    pause). Only these fail over and count toward a circuit breaker.
``UNKNOWN``
    Anything else. Raised to the caller naming the namespace
    (``NamespaceError``), without failover; it opens no breaker.

The table goes by class, most specific first. An error whose class says
nothing (a plain ``ServiceBusError``: the SDK's "Handler failed: ..." wrapper,
or a condition it has no class for) is read further: by its AMQP condition,
then by the first error in its cause chain that the table knows. So the SDK's
``ServiceBusError("Handler failed: Unsupported Message ID type")``, raised
while handling the encoder's ``TypeError``, is the message's fault, and a
"Handler failed" over a broken socket is an outage. A TypeError or ValueError in
the chain counts as the message's only when the SDK's encoder raised it (the
transport raises some of its own), a CBS failure is a refusal only for a 4xx
answer, and a management answer of 408 or 5xx is an outage.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from collections.abc import Iterator

from azure.core.exceptions import AzureError
from azure.servicebus.exceptions import (
    AutoLockRenewFailed,
    AutoLockRenewTimeout,
    MessageAlreadySettled,
    MessageLockLostError,
    MessageNotFoundError,
    MessageSizeExceededError,
    MessagingEntityAlreadyExistsError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusQuotaExceededError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from .._errors import NamespaceError, NamespaceUnavailableError


class Fault(str, enum.Enum):
    """Whose fault an error is; see the module's docstring."""

    MESSAGE = "message"
    NAMESPACE_REFUSAL = "namespace refusal"
    AVAILABILITY = "availability"
    UNKNOWN = "unknown"


_M, _R, _A, _U = Fault.MESSAGE, Fault.NAMESPACE_REFUSAL, Fault.AVAILABILITY, Fault.UNKNOWN

# By class; an error takes the entry of the first class of its MRO listed here.
FAULTS_BY_CLASS: dict[type[BaseException], Fault] = {
    # The message: what the SDK's encoder raises, and what the service says of a message.
    TypeError: _M,
    ValueError: _M,  # UnicodeError included
    OverflowError: _M,
    struct.error: _M,
    MessageSizeExceededError: _M,  # also a ValueError
    # A namespace's own setup.
    ServiceBusAuthenticationError: _R,
    ServiceBusAuthorizationError: _R,
    MessagingEntityNotFoundError: _R,
    MessagingEntityDisabledError: _R,
    # Could not be reached, or did not answer.
    ServiceBusConnectionError: _A,
    ServiceBusCommunicationError: _A,
    OperationTimeoutError: _A,  # geobus's NamespaceTimeoutError too
    ServiceBusServerBusyError: _A,
    # The entity is full or the namespace out of connections: it cannot take messages now,
    # the other namespace may, and a breaker spares it the traffic until it has room.
    ServiceBusQuotaExceededError: _A,
    NamespaceUnavailableError: _A,  # skipped: breaker open, or paused by the operator
    asyncio.TimeoutError: _A,  # not a TimeoutError before Python 3.11
    TimeoutError: _A,
    ConnectionError: _A,
    OSError: _A,
    # Errors of receiving and settling, or of administration: a send does not expect them.
    MessageAlreadySettled: _U,  # a ValueError, but the caller's settlement, not a message's content
    MessageLockLostError: _U,
    SessionLockLostError: _U,
    MessageNotFoundError: _U,
    MessagingEntityAlreadyExistsError: _U,
    SessionCannotBeLockedError: _U,
    AutoLockRenewFailed: _U,
    AutoLockRenewTimeout: _U,
    NamespaceError: _U,
    # Says nothing by itself: read by condition and cause (below).
    ServiceBusError: _U,
    AzureError: _U,
}

# The AMQP conditions of a plain ServiceBusError (the SDK has no class for them).
FAULTS_BY_CONDITION: dict[str, Fault] = {
    # The service refused the message's content: another namespace would too.
    "amqp:not-allowed": _M,
    "amqp:not-implemented": _M,
    "amqp:decode-error": _M,
    "amqp:invalid-field": _M,
    "com.microsoft:argument-error": _M,
    "com.microsoft:argument-out-of-range": _M,
    # The entity went away: that namespace's setup.
    "amqp:resource-deleted": _R,
    # The service, or the connection to it, failed.
    "amqp:internal-error": _A,
    "amqp:connection:forced": _A,
    "amqp:connection:framing-error": _A,
    "amqp:connection:redirect": _A,
    "amqp:socket-error": _A,
    # pyamqp's own word for a link or connection it could not use ("Link is not attached",
    # "Send failed - connection not running", "Failed to open mgmt link").
    "amqp:client-error": _A,
    "com.microsoft:container-close": _A,  # the service moving an entity (upgrades, failover)
}

# The status of a plain ServiceBusError from the management link (schedule, cancel) that
# carries no condition: the service timed out or failed, another namespace may answer.
FAULTS_BY_STATUS: dict[int, Fault] = {408: _A, 500: _A, 502: _A, 503: _A, 504: _A}

# A CBS failure is raised as ServiceBusAuthenticationError whatever its cause. Only an
# answer that refuses the token (4xx) is that namespace's refusal; a put-token the service
# failed or timed out (5xx, 408), or one whose $cbs link broke (status 0), is an outage.
_TOKEN_OUTAGE_STATUS = frozenset({0, 408})

# Where the SDK encodes an outgoing message: a TypeError or ValueError raised there is the
# message's fault; one raised elsewhere in the transport ("Did not receive reciprocal
# protocol header", "Link already closed.") says nothing about the message.
_ENCODER_FILES = ("_pyamqp/_encode.py", "_pyamqp/message.py", "_common/message.py")
_ENCODING_ERRORS = (TypeError, ValueError, OverflowError, struct.error)

_CHAIN_LIMIT = 16  # the SDK's chains are a few links long; this only guards against a cycle


def classify(exc: BaseException) -> Fault:
    """Whose fault ``exc`` is (see the module's docstring). Never raises."""
    for depth, error in enumerate((exc, *_chain(exc))):
        fault = _by_class(error)
        if fault is Fault.UNKNOWN:
            fault = _by_condition_or_status(error)
        elif fault is Fault.NAMESPACE_REFUSAL and isinstance(error, ServiceBusAuthenticationError):
            fault = _token_fault(error)
        elif depth and fault is Fault.MESSAGE and not _from_encoder(error):
            continue  # a transport's ValueError behind a wrapper: read further
        if fault is not Fault.UNKNOWN:
            return fault
    return Fault.UNKNOWN


def _by_condition_or_status(exc: BaseException) -> Fault:
    condition = _condition(exc)
    if condition is not None:
        return FAULTS_BY_CONDITION.get(condition, Fault.UNKNOWN)
    status = getattr(exc, "_status_code", None) if type(exc) is ServiceBusError else None
    try:
        return FAULTS_BY_STATUS.get(int(status), Fault.UNKNOWN) if status is not None else Fault.UNKNOWN
    except (TypeError, ValueError):
        return Fault.UNKNOWN


def _token_fault(exc: BaseException) -> Fault:
    """A CBS failure: refused (the key, the claim) or an outage of the token service."""
    inner = getattr(exc, "inner_exception", None)
    status = getattr(inner, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        outage = status in _TOKEN_OUTAGE_STATUS or status >= 500
        return Fault.AVAILABILITY if outage else Fault.NAMESPACE_REFUSAL
    condition = getattr(getattr(inner, "condition", None), "value", None)
    if condition in (b"amqp:internal-error", "amqp:internal-error"):
        return Fault.AVAILABILITY  # "Failed to open CBS authentication link"
    return Fault.NAMESPACE_REFUSAL


def _from_encoder(exc: BaseException) -> bool:
    """Was ``exc`` (a generic encoding error) raised while the SDK encoded a message?"""
    if not isinstance(exc, _ENCODING_ERRORS) or isinstance(exc, MessageSizeExceededError):
        return True
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith(_ENCODER_FILES):
            return True
        tb = tb.tb_next
    return False


def _by_class(exc: BaseException) -> Fault:
    for cls in type(exc).__mro__:
        fault = FAULTS_BY_CLASS.get(cls)
        if fault is not None:
            return fault
    return Fault.UNKNOWN


def _condition(exc: BaseException) -> str | None:
    # Only a plain ServiceBusError is read by its condition: a subclass already says what it is.
    if type(exc) is not ServiceBusError:
        return None
    condition = getattr(exc, "_condition", None)
    if condition is None:
        return None
    if isinstance(condition, bytes):  # an ErrorCondition is bytes too
        return condition.decode("utf-8", "replace")
    return str(condition)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The errors behind ``exc``, nearest first: what it was raised from or while handling,
    and the SDK's ``inner_exception`` (its ``error=`` keyword)."""
    seen = {id(exc)}
    current: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        assert current is not None
        nxt = current.__cause__ or current.__context__ or getattr(current, "inner_exception", None)
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            return
        seen.add(id(nxt))
        yield nxt
        current = nxt
