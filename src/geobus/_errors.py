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
    └── OutboxError             the outbox file is damaged, not an outbox, or in use by another process

Errors that say the *message or the caller* is wrong — bad input
(``ValueError``/``TypeError``), ``MessageSizeExceededError``,
``ServiceBusAuthenticationError``/``ServiceBusAuthorizationError``,
``MessagingEntityNotFoundError`` — are raised unchanged, as azure-servicebus
raises them: another namespace would refuse the message the same way, so
geobus neither fails over nor swaps roles on them. Errors from the SDK are
chained with ``from`` where geobus wraps them.

No message here contains a key or a SAS signature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from azure.servicebus.exceptions import OperationTimeoutError


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
        detail = "; ".join(f"{name}: {_describe(exc)}" for name, exc in causes.items())
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


class OutboxError(GeobusError):
    """The outbox file cannot be used: damaged, not an outbox, or locked by another process."""


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
