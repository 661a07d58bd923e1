"""The sans-IO decisions: role swaps, and the one judge of a send's outcome."""

from __future__ import annotations

from typing import Any

import pytest
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from geobus import (
    NamespaceError,
    NamespaceTimeoutError,
    NamespaceUnavailableError,
    ReplicationError,
    SendResult,
    WriteQuorum,
)
from geobus._decisions.judge import PassiveRoles, SendJudge

from .fakes import sdk_handler_failed

DOWN = ServiceBusConnectionError(message="down")
BAD_ID = TypeError("message_id: float is not a valid message id type")
# What the SDK raises for a message it cannot encode: a plain ServiceBusError whose cause tells.
HANDLER_FAILED = sdk_handler_failed()
ODD = RuntimeError("an error geobus cannot classify")
NO_KEY = ServiceBusAuthenticationError(message="bad key")
ANY, ALL = SendJudge(quorum=WriteQuorum.ANY), SendJudge(quorum=WriteQuorum.ALL)
DRAINING = SendJudge(draining=True)


def _id(exc: BaseException) -> str:
    return type(exc).__name__


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


class TestJudgeBreakers:
    """Only an outage counts toward a circuit breaker."""

    @pytest.mark.parametrize("error", [DOWN, NamespaceTimeoutError("weu", 1.0), OperationTimeoutError(message="t")], ids=_id)
    def test_an_outage_counts(self, error: BaseException) -> None:
        assert SendJudge.counts_against(error)

    @pytest.mark.parametrize(
        "error",
        [BAD_ID, HANDLER_FAILED, MessageSizeExceededError(message="big"), NO_KEY, ODD, ServiceBusError(message="?")],
        ids=_id,
    )
    def test_nothing_else_does(self, error: BaseException) -> None:
        assert not SendJudge.counts_against(error)


class TestJudgePassive:
    """Passive mode: the active namespace, the other only after an outage."""

    def test_landed_first_time(self) -> None:
        assert ANY.passive({}, landed="weu") == SendResult(landed=("weu",), missed={})

    def test_landed_after_an_outage_is_a_failover(self) -> None:
        result = ANY.passive({"weu": DOWN}, landed="neu")
        assert (result.landed, result.missed, result.failed_over) == (("neu",), {"weu": DOWN}, True)

    @pytest.mark.parametrize("error", [DOWN, NamespaceUnavailableError("weu", "circuit open")], ids=_id)
    def test_an_outage_tries_the_other(self, error: BaseException) -> None:
        assert ANY.tries_next(error)

    @pytest.mark.parametrize("error", [BAD_ID, HANDLER_FAILED, MessageSizeExceededError(message="big"), NO_KEY, ODD], ids=_id)
    def test_nothing_else_does(self, error: BaseException) -> None:
        assert not ANY.tries_next(error)

    @pytest.mark.parametrize("error", [NO_KEY, MessagingEntityNotFoundError(message="gone")], ids=_id)
    def test_the_drainer_takes_a_refused_message_to_the_other(self, error: BaseException) -> None:
        assert DRAINING.tries_next(error)
        assert not DRAINING.tries_next(BAD_ID)

    @pytest.mark.parametrize("error", [BAD_ID, HANDLER_FAILED, NO_KEY], ids=_id)
    def test_what_stopped_the_failover_is_raised_unchanged(self, error: BaseException) -> None:
        with pytest.raises(type(error)) as caught:
            ANY.passive({"weu": error}, landed=None)
        assert caught.value is error

    def test_an_unknown_error_is_raised_naming_its_namespace(self) -> None:
        with pytest.raises(NamespaceError) as caught:
            ANY.passive({"weu": DOWN, "neu": ODD}, landed=None)
        assert caught.value.namespace == "neu" and caught.value.__cause__ is ODD
        assert isinstance(caught.value, ServiceBusError)  # `except ServiceBusError` still catches it
        assert "neu" in str(caught.value) and "RuntimeError" in str(caught.value)

    def test_every_namespace_down_is_a_replication_error(self) -> None:
        skipped = NamespaceUnavailableError("neu", "circuit open")
        with pytest.raises(ReplicationError) as caught:
            ANY.passive({"weu": DOWN, "neu": skipped}, landed=None)
        assert caught.value.causes == {"weu": DOWN, "neu": skipped}

    def test_the_drainer_raises_a_refusal_from_every_namespace(self) -> None:
        gone = MessagingEntityNotFoundError(message="gone")
        with pytest.raises(MessagingEntityNotFoundError):
            DRAINING.passive({"weu": NO_KEY, "neu": gone}, landed=None)
        with pytest.raises(ReplicationError):
            DRAINING.passive({"weu": NO_KEY, "neu": DOWN}, landed=None)


class TestJudgeActive:
    """Active mode: the two concurrent sends, against the write quorum."""

    def test_both_landed(self) -> None:
        result = ALL.active({"weu": None, "neu": None})
        assert result == SendResult(landed=("weu", "neu"), missed={})
        assert not result.partial

    def test_quorum_any_with_one_failure_is_partial_success(self) -> None:
        result = ANY.active({"weu": DOWN, "neu": None})
        assert result.landed == ("neu",)
        assert result.missed == {"weu": DOWN}
        assert result.partial and result.buffered == ()

    def test_quorum_all_with_one_failure_raises_with_landed(self) -> None:
        with pytest.raises(ReplicationError) as caught:
            ALL.active({"weu": None, "neu": DOWN})
        assert caught.value.landed == ("weu",)
        assert caught.value.causes == {"neu": DOWN}

    @pytest.mark.parametrize("judge", [ANY, ALL], ids=["any", "all"])
    def test_nothing_landed_raises(self, judge: SendJudge) -> None:
        weu, neu = ServiceBusConnectionError(message="a"), OperationTimeoutError(message="b")
        with pytest.raises(ReplicationError) as caught:
            judge.active({"weu": weu, "neu": neu})
        assert caught.value.causes == {"weu": weu, "neu": neu}
        assert caught.value.landed == ()

    def test_same_refusal_everywhere_is_raised_unchanged(self) -> None:
        weu, neu = ServiceBusAuthorizationError(message="no claim"), ServiceBusAuthorizationError(message="no claim")
        with pytest.raises(ServiceBusAuthorizationError) as caught:
            ANY.active({"weu": weu, "neu": neu}, buffering=True)
        assert caught.value is weu

    def test_different_refusals_are_a_replication_error(self) -> None:
        causes = {"weu": ServiceBusAuthorizationError(message="no claim"), "neu": MessagingEntityNotFoundError(message="no queue")}
        with pytest.raises(ReplicationError):
            ANY.active(causes)

    @pytest.mark.parametrize("judge", [ANY, ALL], ids=["any", "all"])
    @pytest.mark.parametrize("buffering", [False, True], ids=["", "outbox"])
    @pytest.mark.parametrize("fault", [BAD_ID, HANDLER_FAILED, MessageSizeExceededError(message="big")], ids=_id)
    @pytest.mark.parametrize("other", [DOWN, "same", NamespaceUnavailableError("neu", "circuit open")], ids=str)
    def test_a_message_fault_with_nothing_landed_is_raised_unchanged(
        self, judge: SendJudge, buffering: bool, fault: BaseException, other: Any
    ) -> None:
        # Another namespace would refuse it the same way: never a ReplicationError, never buffered.
        with pytest.raises(type(fault)) as caught:
            judge.active({"weu": fault, "neu": fault if other == "same" else other}, buffering=buffering)
        assert caught.value is fault

    @pytest.mark.parametrize("buffering", [False, True], ids=["", "outbox"])
    def test_an_unknown_error_with_nothing_landed_is_raised_naming_its_namespace(self, buffering: bool) -> None:
        with pytest.raises(NamespaceError) as caught:
            ANY.active({"weu": DOWN, "neu": ODD}, buffering=buffering)
        assert caught.value.namespace == "neu" and caught.value.__cause__ is ODD

    def test_with_an_outbox_an_outage_is_buffered(self) -> None:
        result = ALL.active({"weu": DOWN, "neu": None}, buffering=True)
        assert (result.landed, result.buffered) == (("neu",), ("weu",))
        result = ANY.active({"weu": DOWN, "neu": NO_KEY}, buffering=True)
        assert (result.landed, result.buffered) == ((), ("weu", "neu"))

    @pytest.mark.parametrize("missed", [MessageSizeExceededError(message="big"), ODD], ids=_id)
    def test_a_copy_refused_for_good_meets_quorum_any_and_goes_on_record(self, missed: BaseException) -> None:
        # e.g. a Standard namespace's smaller size limit: the Premium one took the message; the
        # other copy goes to its lane, where the drainer dead-letters it with the reason.
        result = ANY.active({"weu": None, "neu": missed}, buffering=True)
        assert (result.landed, result.missed, result.buffered) == (("weu",), {"neu": missed}, ("neu",))
        assert ANY.active({"weu": None, "neu": missed}).buffered == ()

    @pytest.mark.parametrize("missed", [MessageSizeExceededError(message="big"), ODD], ids=_id)
    def test_a_copy_no_outbox_can_help_fails_quorum_all(self, missed: BaseException) -> None:
        with pytest.raises(ReplicationError) as caught:
            ALL.active({"weu": None, "neu": missed}, buffering=True)
        assert caught.value.landed == ("weu",) and caught.value.__cause__ is missed

    def test_a_disabled_entity_on_both_is_the_callers_setup(self) -> None:
        error = MessagingEntityDisabledError(message="disabled")
        with pytest.raises(MessagingEntityDisabledError):
            ANY.active({"weu": error, "neu": MessagingEntityDisabledError(message="disabled")}, buffering=True)


class TestJudgeDrain:
    """The drainer keeps what an outage holds back and gives up on the rest."""

    def test_worth_waiting(self) -> None:
        assert SendJudge.worth_waiting(ReplicationError("none", causes={"weu": DOWN}))
        assert SendJudge.worth_waiting(DOWN)
        for error in (BAD_ID, HANDLER_FAILED, NO_KEY, NamespaceError("weu", ODD), ODD):
            assert not SendJudge.worth_waiting(error), error

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


