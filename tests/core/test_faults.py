"""The fault table: every error azure-servicebus can raise, and whose fault it is."""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct
from typing import Any

import azure.servicebus.exceptions as sdk_exceptions
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus._common import constants as sdk_constants
from azure.servicebus._pyamqp._encode import encode_message_id, encode_payload
from azure.servicebus._pyamqp.error import (
    AMQPConnectionError,
    AMQPLinkError,
    AuthenticationException,
    ErrorCondition,
    MessageSendFailed,
    TokenAuthFailure,
)
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.exceptions import ServiceBusError

from geobus import NamespaceError, NamespaceTimeoutError, NamespaceUnavailableError
from geobus._decisions.faults import Fault, classify

M, R, A, U = Fault.MESSAGE, Fault.NAMESPACE_REFUSAL, Fault.AVAILABILITY, Fault.UNKNOWN
_LOG = logging.getLogger("test_faults")

# Every exception class azure.servicebus.exceptions exports, as the SDK constructs it bare.
EXPORTED: dict[str, Fault] = {
    "AutoLockRenewFailed": U,
    "AutoLockRenewTimeout": U,
    "AzureError": U,
    "MessageAlreadySettled": U,
    "MessageLockLostError": U,
    "MessageNotFoundError": U,
    "MessageSizeExceededError": M,
    "MessagingEntityAlreadyExistsError": U,
    "MessagingEntityDisabledError": R,
    "MessagingEntityNotFoundError": R,
    "OperationTimeoutError": A,
    "ServiceBusAuthenticationError": R,
    "ServiceBusAuthorizationError": R,
    "ServiceBusCommunicationError": A,
    "ServiceBusConnectionError": A,
    "ServiceBusError": U,
    "ServiceBusQuotaExceededError": A,
    "ServiceBusServerBusyError": A,
    "SessionCannotBeLockedError": U,
    "SessionLockLostError": U,
}

# What the SDK raises for a send the service refused with each condition it knows
# (MessageSendFailed through the SDK's own mapping), and whose fault that is.
BY_CONDITION: dict[bytes, Fault] = {
    b"amqp:internal-error": A,
    b"amqp:not-found": R,
    b"amqp:unauthorized-access": R,
    b"amqp:decode-error": M,
    b"amqp:resource-limit-exceeded": A,
    b"amqp:not-allowed": M,
    b"amqp:invalid-field": M,
    b"amqp:not-implemented": M,
    b"amqp:resource-locked": U,
    b"amqp:precondition-failed": U,
    b"amqp:resource-deleted": R,
    b"amqp:illegal-state": U,
    b"amqp:frame-size-too-small": U,
    b"amqp:connection:forced": A,
    b"amqp:connection:framing-error": A,
    b"amqp:connection:redirect": A,
    b"amqp:session:window-violation": U,
    b"amqp:session:errant-link": U,
    b"amqp:session:handle-in-use": U,
    b"amqp:session:unattached-handle": U,
    b"amqp:link:detach-forced": A,
    b"amqp:link:transfer-limit-exceeded": U,
    b"amqp:link:message-size-exceeded": M,
    b"amqp:link:redirect": U,
    b"amqp:link:stolen": U,
    b"amqp:client-error": A,  # pyamqp's own "Link is not attached", "connection not running"
    b"amqp:unknown-error": A,
    b"amqp:vendor-error": U,
    b"amqp:socket-error": A,
    b"com.microsoft:argument-error": M,
    b"com.microsoft:argument-out-of-range": M,
    b"com.microsoft:auth-failed": R,
    b"com.microsoft:entity-already-exists": U,
    b"com.microsoft:entity-disabled": R,
    b"com.microsoft:message-lock-lost": U,
    b"com.microsoft:message-not-found": U,
    b"com.microsoft:precondition-failed": U,
    b"com.microsoft:server-busy": A,
    b"com.microsoft:session-cannot-be-locked": U,
    b"com.microsoft:session-lock-lost": U,
    b"com.microsoft:timeout": A,
    b"com.microsoft:container-close": A,
}


def _exported_classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(sdk_exceptions).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }


def _bare(cls: type[BaseException]) -> BaseException:
    """An instance of an SDK exception class, whatever its constructor wants."""
    try:
        return cls(message="refused")  # type: ignore[call-arg]
    except TypeError:
        return cls("refused")


def _sdk_wrapped(inner: BaseException) -> ServiceBusError:
    """``inner`` as the SDK's handler reports it: converted while it is being handled."""
    try:
        raise inner
    except Exception as exc:
        return PyamqpTransport.create_servicebus_exception(_LOG, exc)


def _raised_while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit __context__ is the point
    except BaseException as exc:
        return exc


class TestEveryExportedClass:
    """Each class azure.servicebus.exceptions exports has a place in the table."""

    def test_the_list_is_the_sdks(self) -> None:
        # A class a new SDK version adds fails here until it is given a fault.
        assert sorted(_exported_classes()) == sorted(EXPORTED)

    @pytest.mark.parametrize(("name", "fault"), sorted(EXPORTED.items()))
    def test_class(self, name: str, fault: Fault) -> None:
        assert classify(_bare(_exported_classes()[name])) is fault


class TestConditions:
    """A send the service refused, for every condition, through the SDK's own mapping."""

    def test_every_condition_the_sdk_knows_is_listed(self) -> None:
        known = {condition.value for condition in ErrorCondition}
        known |= {value for name, value in vars(sdk_constants).items() if name.startswith("ERROR_CODE_")}
        assert known <= set(BY_CONDITION)

    @pytest.mark.parametrize(("condition", "fault"), sorted(BY_CONDITION.items()), ids=lambda v: str(v))
    def test_refused_transfer(self, condition: bytes, fault: Fault) -> None:
        error = _sdk_wrapped(MessageSendFailed(condition=condition, description="refused"))
        assert classify(error) is fault

    @pytest.mark.parametrize("condition", sorted(BY_CONDITION))
    def test_a_lost_connection_is_an_outage_whatever_its_condition(self, condition: bytes) -> None:
        assert classify(_sdk_wrapped(AMQPConnectionError(condition, description="lost"))) is A

    @pytest.mark.parametrize("condition", [b"amqp:link:detach-forced", b"amqp:internal-error"])
    def test_a_detached_link_is_an_outage(self, condition: bytes) -> None:
        assert classify(_sdk_wrapped(AMQPLinkError(condition, description="detached"))) is A

    def test_a_refused_token_is_a_refusal(self) -> None:
        error = _sdk_wrapped(AuthenticationException(ErrorCondition.ClientError, description="bad key"))
        assert classify(error) is R

    @pytest.mark.parametrize(("status", "fault"), [(401, R), (403, R), (404, R), (400, R), (0, A), (408, A), (500, A), (503, A)])
    def test_a_token_answer_is_a_refusal_only_when_it_refuses(self, status: int, fault: Fault) -> None:
        """Status 0: the $cbs link broke mid-request; 5xx/408: the token service failed."""
        error = _sdk_wrapped(TokenAuthFailure(status, b"answer"))
        assert (type(error).__name__, classify(error)) == ("ServiceBusAuthenticationError", fault)

    def test_a_cbs_link_that_would_not_open_is_an_outage(self) -> None:
        failed = AuthenticationException(ErrorCondition.InternalError, description="Failed to open CBS authentication link.")
        error = _sdk_wrapped(failed)
        assert (type(error).__name__, classify(error)) == ("ServiceBusAuthenticationError", A)

    @pytest.mark.parametrize(("status", "fault"), [(503, A), (500, A), (504, A), (408, A), (400, U), ("503", A)])
    def test_a_management_answer_without_condition_is_read_by_its_status(self, status: Any, fault: Fault) -> None:
        assert classify(ServiceBusError(message="schedule failed", status_code=status)) is fault

    def test_a_client_timeout_is_an_outage(self) -> None:
        error = _sdk_wrapped(MessageSendFailed(condition=ErrorCondition.ClientError, description="timed out"))
        assert (type(error).__name__, classify(error)) == ("OperationTimeoutError", A)

    def test_a_condition_held_as_bytes_or_text(self) -> None:
        for condition in (b"amqp:decode-error", "amqp:decode-error", ErrorCondition.DecodeError):
            error = ServiceBusError(message="refused")
            error._condition = condition
            assert classify(error) is M


class TestCauses:
    """A plain ServiceBusError says nothing by itself: its cause chain does."""

    @pytest.mark.parametrize(
        "inner",
        [TypeError("Unsupported Message ID type."), ValueError("bad"), OverflowError("big"), struct.error("range")],
        ids=lambda e: type(e).__name__,
    )
    def test_an_encoding_error_raised_outside_the_encoder_says_nothing(self, inner: BaseException) -> None:
        """pyamqp's transport raises ValueErrors too ("Did not receive reciprocal protocol
        header", "Link already closed."): only one the encoder raised blames the message."""
        error = _sdk_wrapped(inner)
        assert type(error) is ServiceBusError and str(error).startswith("Handler failed")
        assert classify(error) is U

    def test_a_transport_value_error_over_a_broken_socket_is_an_outage(self) -> None:
        header = _raised_while_handling(ValueError("Did not receive reciprocal protocol header"), ConnectionResetError())
        assert classify(_sdk_wrapped(header)) is A

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"message_id": 3.5}, "Unsupported Message ID type"),
            ({"correlation_id": 3.5}, "Unsupported Message ID type"),
            ({"message_id": 2**64}, "unsigned long"),
            ({"application_properties": {"colours": {"red"}}}, "Unable to encode"),
            ({"application_properties": {"n": 2**40}}, "Value supplied for int"),
        ],
        ids=["float-id", "float-correlation-id", "ulong-overflow", "set-property", "int-property"],
    )
    def test_what_the_sdks_encoder_raises_is_the_messages(self, fields: dict[str, Any], expected: str) -> None:
        """The real encoder's error, wrapped the way the SDK's send path wraps it."""
        message = ServiceBusMessage(b"x", **{"message_id": "m", **fields})
        try:
            encode_payload(bytearray(), PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message))
        except Exception as encoding_error:
            error = PyamqpTransport.create_servicebus_exception(_LOG, encoding_error)
        else:
            pytest.fail("the SDK encoded it")
        assert expected in str(error)
        assert classify(error) is M

    def test_the_inner_exception_alone_tells(self) -> None:
        try:
            encode_message_id(3.5)  # type: ignore[arg-type]
        except TypeError as encoder_error:
            inner = encoder_error
        assert classify(ServiceBusError(message="Handler failed", error=inner)) is M

    @pytest.mark.parametrize("inner", [BrokenPipeError(32, "Broken pipe"), TimeoutError(), ConnectionResetError()])
    def test_a_broken_socket_is_an_outage(self, inner: BaseException) -> None:
        assert classify(_sdk_wrapped(inner)) is A

    def test_an_error_of_no_kind_is_unknown(self) -> None:
        assert classify(_sdk_wrapped(AttributeError("'NoneType' object has no attribute 'send'"))) is U

    def test_a_bug_met_while_handling_a_broken_socket_is_an_outage(self) -> None:
        bug = _raised_while_handling(AttributeError("'NoneType' has no attribute"), ConnectionResetError())
        assert classify(_sdk_wrapped(bug)) is A

    def test_a_telling_class_is_not_overruled_by_its_cause(self) -> None:
        # The SDK named it: a ValueError met while a socket was torn down does not make it the message's.
        lost = _raised_while_handling(sdk_exceptions.ServiceBusConnectionError(message="lost"), ValueError("fd -1"))
        assert classify(lost) is A

    def test_a_condition_is_read_before_the_cause(self) -> None:
        error = _raised_while_handling(ServiceBusError(message="busy", condition=b"amqp:internal-error"), TypeError())
        assert classify(error) is A

    def test_a_cycle_in_the_chain_ends(self) -> None:
        first, second = ServiceBusError(message="a"), ServiceBusError(message="b")
        first.__context__, second.__context__ = second, first
        assert classify(first) is U


class TestGeobusAndPythonErrors:
    """geobus's own errors, and Python's, where a send can meet them."""

    @pytest.mark.parametrize(
        ("error", "fault"),
        [
            (NamespaceTimeoutError("weu", 5.0), A),
            (NamespaceUnavailableError("weu", "circuit open"), A),
            (NamespaceError("weu", RuntimeError("odd")), U),
            (asyncio.TimeoutError(), A),
            (TimeoutError(), A),
            (ConnectionRefusedError(), A),
            (OSError(113, "No route to host"), A),
            (TypeError("bad"), M),
            (ValueError("bad"), M),
            (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"), M),
            (RuntimeError("bug"), U),
            (KeyError("x"), U),
            (asyncio.CancelledError(), U),
        ],
        ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v.value),
    )
    def test_error(self, error: BaseException, fault: Fault) -> None:
        assert classify(error) is fault
