"""The exceptions geobus raises.

::

    GeobusError
    ├── ConfigurationError      (also a ValueError) a setting is missing or wrong; names the field
    ├── ReplicationError        no namespace took the message (or the write quorum was not met);
    │   │                       .causes maps each namespace to its error, .landed names those that took it
    │   └── OutboxFullError     ...and the outbox is full, so it was not buffered either
    ├── NamespaceTimeoutError   geobus's own deadline for one namespace passed; also the SDK's
    │                           OperationTimeoutError (a ServiceBusError) and a TimeoutError
    ├── NamespaceUnavailableError  geobus did not try a namespace: its circuit breaker is open,
    │                           or an operator paused it (only ever a cause in ReplicationError)
    ├── NamespaceError          a namespace answered with an error geobus cannot classify; also a
    │                           ServiceBusError; .namespace names it, the original is __cause__
    ├── EntityReadError         a namespace's entity definitions could not be read (compare_entities);
    │                           .namespace names it, the original is __cause__
    └── OutboxError             the outbox file is damaged, not an outbox, or in use by another process

What an error from a namespace means is decided once, by the table in
``_decisions/faults.py``:

- **The message's fault** — raised unchanged, before or instead of anything
  else: ``TypeError``/``ValueError`` naming the field, raised by geobus's
  validation before anything is sent or buffered; ``MessageSizeExceededError``;
  the SDK's plain ``ServiceBusError("Handler failed: ...")`` whose cause is an
  encoding error (``TypeError``, ``ValueError``, ``OverflowError``,
  ``struct.error``); a service condition that blames the message
  (``amqp:decode-error``, ``com.microsoft:argument-error``...). Another
  namespace would refuse it the same way: no failover, breakers untouched,
  never buffered in place of a send.
- **A namespace's refusal** — ``ServiceBusAuthenticationError``,
  ``ServiceBusAuthorizationError``, ``MessagingEntityNotFoundError``,
  ``MessagingEntityDisabledError``: raised unchanged by a send (the caller's
  setup is wrong), without failover; the outbox's drainer takes a buffered
  message to the other namespace instead.
- **Availability** — connection, communication, timeout, server-busy and
  quota errors (after the SDK's own retries), geobus's own deadline, a skipped
  namespace: only these fail over, become a ``ReplicationError`` (or wait in
  the outbox) and count toward a circuit breaker.
- **Unknown** — anything else: raised as ``NamespaceError`` naming the
  namespace (an ``except ServiceBusError`` still catches it), without
  failover and without buffering; it opens no breaker.

In active mode, once one namespace took the message, the other's missed copy
is not the caller's error: it is reported in ``SendResult.missed`` and, with
an outbox, waits in that namespace's lane, where an outage is waited out and a
refusal for good is dead-lettered with the reason. A copy missed for the
message's fault or an unknown error never meets a write quorum of ``all``.

Errors from the SDK are chained with ``from`` where geobus wraps them. No
message geobus writes contains a key or a SAS signature: a refused value, and
an error named as a cause, are told by ``_redact.describe`` (what it looks like;
an error's first line, redacted), never quoted whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

from ._redact import describe


class GeobusError(Exception):
    """Base class of the errors geobus raises itself."""


class ConfigurationError(GeobusError, ValueError):
    """A setting is missing or invalid. ``field`` names it (``primary.connection_string``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NamespaceTimeoutError(GeobusError, OperationTimeoutError, TimeoutError):
    """A namespace did not answer within geobus's deadline (a send, a receive, a settlement).

    It is also the SDK's ``OperationTimeoutError`` (so a ``ServiceBusError``) and a
    ``TimeoutError``: worker code written for azure-servicebus catches it unchanged.
    """

    def __init__(self, namespace: str, seconds: float) -> None:
        OperationTimeoutError.__init__(
            self, message=f"namespace {namespace!r} did not answer within {seconds:g} s"
        )
        self.namespace = namespace
        self.seconds = seconds


class ReplicationError(GeobusError):
    """The send did not reach enough namespaces.

    Attributes:
        causes: each namespace that failed, mapped to its error.
        landed: the namespaces that did store the message (non-empty only when a
            write quorum of ``all`` was not met).
    """

    def __init__(
        self,
        message: str,
        *,
        causes: Mapping[str, BaseException],
        landed: Sequence[str] = (),
    ) -> None:
        detail = "; ".join(f"{name}: {describe(exc)}" for name, exc in causes.items())
        super().__init__(f"{message} ({detail})" if detail else message)
        self.causes = dict(causes)
        self.landed = tuple(landed)


class OutboxFullError(ReplicationError):
    """No namespace took the message and the outbox is full: nothing was buffered.

    The caller still holds the message; nothing it was told was accepted is lost.
    """


class NamespaceUnavailableError(GeobusError):
    """geobus skipped a namespace without trying it: ``reason`` says why
    (``circuit open`` or ``paused by operator``)."""

    def __init__(self, namespace: str, reason: str) -> None:
        super().__init__(f"namespace {namespace!r} skipped: {reason}")
        self.namespace = namespace
        self.reason = reason


class NamespaceError(GeobusError, ServiceBusError):
    """A namespace answered with an error geobus cannot classify as an outage, a refusal or
    the message's fault.

    Raised instead of that error, chained ``from`` it (``__cause__``), and a
    ``ServiceBusError`` like it. geobus did not fail over, did not buffer the
    message and counted nothing against the namespace's circuit breaker.

    Attributes:
        namespace: the namespace that answered so.
        error: the error it answered with (also ``__cause__``).
    """

    def __init__(self, namespace: str, error: BaseException) -> None:
        ServiceBusError.__init__(
            self, f"namespace {namespace!r} failed with an error geobus cannot classify ({describe(error)})"
        )
        self.namespace = namespace
        self.error = error


class EntityReadError(GeobusError):
    """A namespace's entity definitions could not be read through its administration client
    (``compare_entities``): unreachable, the credential refused, not allowed to manage.

    Attributes:
        namespace: which one (``primary``, ``secondary``, or the name it was given).
        error: the SDK's error (also ``__cause__``).
    """

    def __init__(self, namespace: str, error: BaseException) -> None:
        super().__init__(f"cannot read the entities of namespace {namespace!r}: {describe(error)}")
        self.namespace = namespace
        self.error = error


class OutboxError(GeobusError):
    """The outbox file cannot be used: damaged, not an outbox, or locked by another process."""
