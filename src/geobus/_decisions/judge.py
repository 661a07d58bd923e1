"""Replication decisions, without I/O: which namespace, and what a send's results mean.

``SendJudge`` is the one judge of a send's outcome: the async sender's passive
and active modes and the outbox's drainer all ask it, and unit tests drive it
directly. Whose fault each error is comes from the table in ``faults.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from azure.core.exceptions import AzureError

from .._config import WriteQuorum
from .._errors import NamespaceError, ReplicationError
from .._models import SendResult
from .faults import Fault, classify


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


# The faults a send reports to its caller, in this order: the message's own, then an error
# geobus cannot classify. A copy missed for one of them never meets a quorum of all; after
# any other (an outage, one namespace's refusal) that namespace may take the message later.
_FOR_THE_CALLER = (Fault.MESSAGE, Fault.UNKNOWN)


@dataclass(frozen=True)
class SendJudge:
    """The one judge of a send's outcome, for passive mode, active mode and the outbox's drainer.

    ``quorum``: active mode's write quorum. ``draining``: the outbox's drainer is
    resending a buffered message, so a namespace's refusal (a rotated key, a
    missing entity) sends it to the other namespace rather than to the caller.

    The rules, for every mode:

    - Only an availability error fails over (passive) and counts toward a
      circuit breaker; a refusal fails over only when draining.
    - When no namespace took the message, a message fault is raised unchanged
      and an unknown error as ``NamespaceError`` naming the namespace: the
      caller is told, and nothing is buffered.
    - In active mode, once one namespace took the message, every copy the
      other missed goes to that namespace's outbox lane (with an outbox): an
      outage is waited out there, and a refusal for good (a smaller message
      size limit on one tier, an error geobus cannot classify) is dead-lettered
      with the reason, so the missing copy is on record. A copy missed for the
      message's fault or an unknown error never meets a quorum of ``all``
      (``ReplicationError`` naming what landed; nothing is buffered).

    Immutable and I/O-free: safe to share.
    """

    quorum: WriteQuorum = WriteQuorum.ANY
    draining: bool = False

    @staticmethod
    def counts_against(error: BaseException) -> bool:
        """Does ``error`` count toward its namespace's circuit breaker? Only an outage does."""
        return classify(error) is Fault.AVAILABILITY

    @staticmethod
    def worth_waiting(error: BaseException) -> bool:
        """The drainer: keep the message and try again later (else it is refused for good).

        An outage is waited out, and so is an answer from a namespace that geobus cannot
        classify (a Service Bus error of no known kind): a message the caller was told is
        safe is dead-lettered only for a reason that will not pass (its own fault, or a
        refusal from every namespace), never on a guess. A cancellation is never retried.
        """
        if not isinstance(error, Exception):
            return False
        if isinstance(error, ReplicationError):
            return True
        fault = classify(error)
        answer = error.error if isinstance(error, NamespaceError) else error
        return fault is Fault.AVAILABILITY or (fault is Fault.UNKNOWN and isinstance(answer, AzureError))

    def tries_next(self, error: BaseException) -> bool:
        """Passive mode: after ``error``, may the other namespace take the message?"""
        fault = classify(error)
        return fault is Fault.AVAILABILITY or (self.draining and fault not in _FOR_THE_CALLER)

    def passive(self, missed: Mapping[str, BaseException], landed: str | None) -> SendResult:
        """Judge passive mode's tries, made in order until one landed or ``tries_next`` said stop.

        Raises:
            Exception: the error that stopped the failover (a message fault, a
                refusal), unchanged; when draining, the last refusal when every
                namespace refused.
            NamespaceError: ...an unknown error, naming the namespace.
            ReplicationError: no namespace took the message (every one unavailable).
        """
        if landed is not None:
            return SendResult(landed=(landed,), missed=dict(missed), failed_over=bool(missed))
        name, last = list(missed.items())[-1]
        if not self.tries_next(last):
            raise _as_raised(name, last)
        if self.draining and all(classify(e) is Fault.NAMESPACE_REFUSAL for e in missed.values()):
            raise last
        raise ReplicationError("no namespace took the message", causes=missed) from last

    def active(self, results: Mapping[str, BaseException | None], *, buffering: bool = False) -> SendResult:
        """Judge active mode's concurrent tries (``None``: that namespace took it).

        ``buffering``: there is an outbox. It keeps every copy missed while another
        namespace took the message, and both copies when an outage or refusals
        kept the message from both; ``SendResult.buffered`` names the namespaces
        whose copy it keeps.

        Raises:
            Exception: a message fault, when no namespace took the message; or the
                same refusal from every namespace (the caller's setup), unchanged.
            NamespaceError: an unknown error, when no namespace took the message.
            ReplicationError: no namespace took it (and nothing is buffering it),
                or quorum ``all`` was not met.
        """
        landed = tuple(name for name, error in results.items() if error is None)
        missed = {name: error for name, error in results.items() if error is not None}
        faults = {name: classify(error) for name, error in missed.items()}
        if not landed:
            for first in _FOR_THE_CALLER:
                for name, fault in faults.items():
                    if fault is first:
                        raise _as_raised(name, missed[name])
            refusals = [e for n, e in missed.items() if faults[n] is Fault.NAMESPACE_REFUSAL]
            if len(refusals) == len(missed) and len({type(e) for e in refusals}) == 1:
                raise refusals[0]  # the same refusal everywhere: the caller's setup, not an outage
            if buffering:
                return SendResult(landed=(), missed=missed, buffered=tuple(missed))
            raise ReplicationError("no namespace took the message", causes=missed)
        if self.quorum == WriteQuorum.ALL:
            doomed = [e for n, e in missed.items() if faults[n] in _FOR_THE_CALLER]
            unkept = doomed or ([] if buffering else list(missed.values()))
            if unkept:
                raise ReplicationError(
                    "write quorum 'all' not met", causes=missed, landed=landed
                ) from unkept[0]
        return SendResult(landed=landed, missed=missed, buffered=tuple(missed) if buffering else ())


def _as_raised(namespace: str, error: BaseException) -> BaseException:
    """``error`` as the caller gets it: unchanged, or wrapped naming its namespace when unknown."""
    if classify(error) is Fault.UNKNOWN:
        wrapped = NamespaceError(namespace, error)
        wrapped.__cause__ = error
        return wrapped
    return error
