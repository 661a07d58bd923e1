"""The sans-IO decisions: which errors fail over, role swaps, what active-mode results mean."""

from __future__ import annotations

import asyncio

import pytest
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
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
)

from geobus import NamespaceTimeoutError, ReplicationError, SendResult, WriteQuorum
from geobus._policy import PassiveRoles, active_outcome, is_availability_error

AVAILABILITY = [
    ServiceBusConnectionError(message="connection lost"),
    ServiceBusCommunicationError(message="dns failure"),
    OperationTimeoutError(message="timed out"),
    ServiceBusServerBusyError(message="busy"),
    ServiceBusQuotaExceededError(message="quota"),
    ServiceBusError(message="unnamed service error"),
    NamespaceTimeoutError("weu", 5.0),
    asyncio.TimeoutError(),
    ConnectionResetError(),
]

REJECTIONS = [
    MessageSizeExceededError(message="too large"),
    ServiceBusAuthenticationError(message="bad key"),
    ServiceBusAuthorizationError(message="no send claim"),
    MessagingEntityNotFoundError(message="no such queue"),
    MessagingEntityDisabledError(message="disabled"),
    ValueError("bad input"),
    TypeError("bad type"),
]


def _id(exc: BaseException) -> str:
    return type(exc).__name__


class TestClassification:
    """Errors that say the namespace may be down fail over; the caller's mistakes do not."""

    @pytest.mark.parametrize("error", AVAILABILITY, ids=_id)
    def test_availability_errors(self, error: BaseException) -> None:
        assert is_availability_error(error)

    @pytest.mark.parametrize("error", REJECTIONS, ids=_id)
    def test_rejections(self, error: BaseException) -> None:
        assert not is_availability_error(error)

    @pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("x"), asyncio.CancelledError()], ids=_id)
    def test_unrelated_errors_are_not_availability(self, error: BaseException) -> None:
        assert not is_availability_error(error)

    def test_namespace_timeout_is_what_sdk_callers_catch(self) -> None:
        error = NamespaceTimeoutError("weu", 0.25)
        assert isinstance(error, OperationTimeoutError)
        assert isinstance(error, TimeoutError)
        assert (error.namespace, error.seconds) == ("weu", 0.25)
        assert "weu" in str(error) and "0.25" in str(error)


class TestPassiveRoles:
    """The active namespace, and when a success swaps it."""

    def test_first_name_is_active(self) -> None:
        roles = PassiveRoles(["weu", "neu"])
        assert roles.order() == ("weu", "neu")
        assert roles.standby == "neu"

    def test_success_on_active_keeps_roles(self) -> None:
        roles = PassiveRoles(["weu", "neu"])
        assert roles.succeeded_on("weu") is False
        assert roles.active == "weu"

    def test_success_on_standby_swaps_roles(self) -> None:
        roles = PassiveRoles(["weu", "neu"])
        assert roles.succeeded_on("neu") is True
        assert roles.order() == ("neu", "weu")
        assert roles.succeeded_on("weu") is True
        assert roles.active == "weu"

    def test_forced_active(self) -> None:
        assert PassiveRoles(["weu", "neu"], active="neu").order() == ("neu", "weu")

    @pytest.mark.parametrize(("names", "active"), [(["weu"], None), (["weu", "weu"], None), (["weu", "neu"], "eus")])
    def test_invalid_roles(self, names: list[str], active: str | None) -> None:
        with pytest.raises(ValueError):
            PassiveRoles(names, active=active)


class TestActiveOutcome:
    """Judging the two concurrent sends against the write quorum."""

    def test_both_landed(self) -> None:
        result = active_outcome(WriteQuorum.ALL, {"weu": None, "neu": None})
        assert result == SendResult(landed=("weu", "neu"), missed={})
        assert not result.partial

    def test_quorum_any_with_one_failure_is_partial_success(self) -> None:
        error = ServiceBusConnectionError(message="down")
        result = active_outcome(WriteQuorum.ANY, {"weu": error, "neu": None})
        assert result.landed == ("neu",)
        assert result.missed == {"weu": error}
        assert result.partial

    def test_quorum_all_with_one_failure_raises_with_landed(self) -> None:
        error = ServiceBusConnectionError(message="down")
        with pytest.raises(ReplicationError) as caught:
            active_outcome(WriteQuorum.ALL, {"weu": None, "neu": error})
        assert caught.value.landed == ("weu",)
        assert caught.value.causes == {"neu": error}

    @pytest.mark.parametrize("quorum", list(WriteQuorum))
    def test_nothing_landed_raises(self, quorum: WriteQuorum) -> None:
        weu, neu = ServiceBusConnectionError(message="a"), OperationTimeoutError(message="b")
        with pytest.raises(ReplicationError) as caught:
            active_outcome(quorum, {"weu": weu, "neu": neu})
        assert caught.value.causes == {"weu": weu, "neu": neu}
        assert caught.value.landed == ()

    def test_same_rejection_everywhere_is_raised_unchanged(self) -> None:
        weu, neu = MessageSizeExceededError(message="big"), MessageSizeExceededError(message="big")
        with pytest.raises(MessageSizeExceededError) as caught:
            active_outcome(WriteQuorum.ANY, {"weu": weu, "neu": neu})
        assert caught.value is weu

    def test_different_rejections_are_a_replication_error(self) -> None:
        causes = {
            "weu": ServiceBusAuthorizationError(message="no claim"),
            "neu": MessagingEntityNotFoundError(message="no queue"),
        }
        with pytest.raises(ReplicationError):
            active_outcome(WriteQuorum.ANY, causes)

    def test_rejection_and_outage_is_a_replication_error(self) -> None:
        causes = {"weu": MessageSizeExceededError(message="big"), "neu": ServiceBusConnectionError(message="down")}
        with pytest.raises(ReplicationError):
            active_outcome(WriteQuorum.ANY, causes)


class TestReplicationError:
    """The error a caller gets when no namespace took the message."""

    def test_it_carries_both_causes(self) -> None:
        weu, neu = ServiceBusConnectionError(message="refused"), NamespaceTimeoutError("neu", 2.0)
        error = ReplicationError("no namespace took the message", causes={"weu": weu, "neu": neu})
        assert error.causes == {"weu": weu, "neu": neu}
        assert "weu: ServiceBusConnectionError: refused" in str(error)
        assert "neu: NamespaceTimeoutError" in str(error)

    def test_message_keeps_only_the_first_line_of_a_cause(self) -> None:
        error = ReplicationError("failed", causes={"weu": RuntimeError("first line\nsecond line")})
        assert "first line" in str(error)
        assert "second line" not in str(error)


class TestMessageFaultConditions:
    """The SDK raises some of the message's own faults as a plain ServiceBusError."""

    @pytest.mark.parametrize(
        "condition", [b"amqp:not-allowed", b"com.microsoft:argument-error", b"com.microsoft:argument-out-of-range"]
    )
    def test_a_message_fault_condition_is_not_an_outage(self, condition: bytes) -> None:
        assert not is_availability_error(ServiceBusError(message="refused", condition=condition))

    def test_an_unnamed_condition_still_is(self) -> None:
        assert is_availability_error(ServiceBusError(message="refused", condition=b"amqp:internal-error"))
