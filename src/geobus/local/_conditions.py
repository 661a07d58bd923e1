"""The AMQP error conditions the local namespace sends, as Azure Service Bus names them.

The SDK maps these names to its exceptions, so they are the namespace's
vocabulary for every refusal: a link, a delivery, a connection, a management
or ``$cbs`` reply.
"""

from __future__ import annotations

import uuid

from proton import Condition, symbol

NOT_FOUND = "amqp:not-found"
UNAUTHORIZED = "amqp:unauthorized-access"
NOT_IMPLEMENTED = "amqp:not-implemented"
NOT_ALLOWED = "amqp:not-allowed"
DECODE_ERROR = "amqp:decode-error"
INVALID_FIELD = "amqp:invalid-field"
RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
LOCK_LOST = "com.microsoft:message-lock-lost"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"
ARGUMENT_ERROR = "com.microsoft:argument-error"
SESSION_LOCK_LOST = "com.microsoft:session-lock-lost"
SESSION_CANNOT_BE_LOCKED = "com.microsoft:session-cannot-be-locked"
TIMEOUT = "com.microsoft:timeout"
TRACKING_ID = symbol("com.microsoft:tracking-id")


def error_condition(name: str, description: str) -> Condition:
    """An AMQP error as Service Bus sends it: with an info map.

    azure-servicebus's pure-Python transport reads an error as a three-field list
    (condition, description, info); proton leaves a null info off the wire, and the
    client then fails with IndexError while handling the reply and never returns.
    """
    return Condition(name, description, {TRACKING_ID: str(uuid.uuid4())})
