"""The ways to build a client, and a client's receivers, written once for ``geobus`` and
``geobus.aio``.

Both ``GeoServiceBusClient`` classes take one ``ReplicationConfig``; ``FromConfig``'s
classmethods only make that config, so they hold for either face. Each takes
azure-servicebus's ``ServiceBusClient`` options under their own names
(``logging_enable``, ``transport_type``, ``retry_total``...): see
``ReplicationConfig.with_sdk_options``.

``ReceiverFactories`` gives both faces ``get_queue_receiver`` and
``get_subscription_receiver``: one signature, one set of typing overloads (without a
``session_id`` a plain receiver, with one a session receiver), one
``ReceiverOptions``; each face says only how it builds a receiver from them.
``SessionListings`` gives both ``list_queue_sessions`` and ``list_subscription_sessions``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Generic, NoReturn, TypeVar, overload

from azure.servicebus import ServiceBusReceiveMode, ServiceBusSessionFilter, ServiceBusSubQueue
from typing_extensions import Self

from ._config import ReplicationConfig
from ._engine.handler_options import ReceiverOptions


class FromConfig:
    """``from_config``, ``from_connection_strings`` and ``from_namespaces`` over ``cls(config)``."""

    def __init__(self, config: ReplicationConfig) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: ReplicationConfig | Mapping[str, Any], **options: Any) -> Self:
        """A client for ``config``: a ``ReplicationConfig``, or a mapping in the shape of the
        TOML file (``{"mode": "active", "primary": {...}, "secondary": {...}}``).

        ``options``: ``ServiceBusClient`` options for both namespaces, over the config's
        (``ReplicationConfig.with_sdk_options``).

        Raises:
            ConfigurationError: a setting or option is missing or invalid (the message names it).
            OutboxError: the configured outbox file is damaged, not an outbox, or in use
                by another process.
        """
        built = config if isinstance(config, ReplicationConfig) else ReplicationConfig.from_mapping(config)
        return cls(built.with_sdk_options(**options) if options else built)

    @classmethod
    def from_connection_strings(cls, primary: str, secondary: str, **options: Any) -> Self:
        """A client for two connection strings, the drop-in for
        ``ServiceBusClient.from_connection_string(conn_str, **kwargs)``.

        ``options``: ``ReplicationConfig``'s other fields (``mode="active"``,
        ``outbox=OutboxPolicy(...)``...) and the SDK client's options, for both namespaces:
        ``logging_enable``, ``transport_type``, ``http_proxy``, ``user_agent``,
        ``custom_endpoint_address``, ``connection_verify``, ``ssl_context``,
        ``socket_timeout`` are passed on; ``retry_total``, ``retry_backoff_factor``,
        ``retry_backoff_max``, ``retry_mode`` set ``ReplicationConfig.retry``;
        ``try_timeout`` and ``uamqp_transport=True`` are refused (geobus owns each
        attempt's deadline and runs on the pure-Python transport). Unlike the SDK,
        ``logging_enable`` must be a ``bool``. One ``custom_endpoint_address`` serves
        both namespaces (a gateway that routes by host name); for an endpoint per
        region, set it in each ``NamespaceConfig.client_options`` and use ``from_config``.

        Raises:
            ConfigurationError: a bad or unknown option (``field`` names it); OutboxError:
                as ``from_config``.
        """
        return cls(ReplicationConfig.from_connection_strings(primary, secondary, **options))

    @classmethod
    def from_namespaces(cls, primary: str, secondary: str, credential: Any, **options: Any) -> Self:
        """A client for two fully qualified namespaces (``contoso-weu.servicebus.windows.net``)
        and one azure-identity credential, sync or async: the drop-in for
        ``ServiceBusClient(fully_qualified_namespace, credential, **kwargs)``; ``options`` as
        ``from_connection_strings``.

        Raises:
            ConfigurationError, OutboxError: as ``from_connection_strings``.
        """
        return cls(ReplicationConfig.from_namespaces(primary, secondary, credential, **options))

    @classmethod
    def from_connection_string(cls, conn_str: str, **kwargs: Any) -> NoReturn:
        """Not offered: geobus needs two namespaces, and one connection string names one.

        Raises:
            NotImplementedError: always; use ``from_connection_strings(primary, secondary, **kwargs)``.
        """
        raise NotImplementedError(
            "from_connection_string: geobus replicates across two namespaces and one connection string "
            "names one; use GeoServiceBusClient.from_connection_strings(primary, secondary, **kwargs)"
        )


Plain = TypeVar("Plain")  # a face's DedupReceiver
Session = TypeVar("Session")  # a face's DedupSessionReceiver
Listing = TypeVar("Listing")  # a face's list of session ids: a list, or an async iterator


class ReceiverFactories(Generic[Plain, Session]):
    """``get_queue_receiver`` and ``get_subscription_receiver`` over ``self._receiver``."""

    def _receiver(self, entity: dict[str, str], options: ReceiverOptions) -> Plain | Session:  # pragma: no cover
        """A receiver of ``entity`` (``{"queue": name}`` or ``{"topic": ..., "subscription": ...}``)."""
        raise NotImplementedError

    # Without a session_id a DedupReceiver, with one a DedupSessionReceiver, as the SDK's
    # one ServiceBusReceiver class is either.
    @overload
    def get_queue_receiver(
        self, queue_name: str, *, client_identifier: str | None = ..., socket_timeout: float | None = ...,
        session_id: None = None, sub_queue: ServiceBusSubQueue | str | None = ...,
        receive_mode: ServiceBusReceiveMode | str = ..., max_wait_time: float | None = ...,
        auto_lock_renewer: Any = ..., prefetch_count: int = ..., prefetch: int | None = ...,
    ) -> Plain: ...
    @overload
    def get_queue_receiver(
        self, queue_name: str, *, client_identifier: str | None = ..., socket_timeout: float | None = ...,
        session_id: str | ServiceBusSessionFilter, sub_queue: ServiceBusSubQueue | str | None = ...,
        receive_mode: ServiceBusReceiveMode | str = ..., max_wait_time: float | None = ...,
        auto_lock_renewer: Any = ..., prefetch_count: int = ..., prefetch: int | None = ...,
    ) -> Session: ...
    def get_queue_receiver(
        self,
        queue_name: str,
        *,
        client_identifier: str | None = None,
        socket_timeout: float | None = None,
        session_id: str | ServiceBusSessionFilter | None = None,
        sub_queue: ServiceBusSubQueue | str | None = None,
        receive_mode: ServiceBusReceiveMode | str = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None,
        auto_lock_renewer: Any = None,
        prefetch_count: int = 0,
        prefetch: int | None = None,
    ) -> Plain | Session:
        """A ``DedupReceiver`` of ``queue_name`` on both namespaces (with ``session_id``, a
        ``DedupSessionReceiver``), with
        ``ServiceBusClient.get_queue_receiver``'s options:

        - ``receive_mode``: peek-lock (settle each message) or receive-and-delete;
        - ``max_wait_time``: seconds without a message before iteration ends (None: never);
        - ``sub_queue``: the dead-letter (or transfer dead-letter) queue of both namespaces;
        - ``session_id``: a ``DedupSessionReceiver`` (a name, or ``NEXT_AVAILABLE_SESSION``);
        - ``auto_lock_renewer``: an ``AutoLockRenewer`` for the messages handed out;
        - ``client_identifier``, ``socket_timeout``: for both namespaces' SDK receivers;
          without an identifier both get the same generated one.
        - ``prefetch_count``: how many messages each namespace's pump fetches at least,
          per namespace. ``0`` (the SDK's default) fetches what ``receive_messages`` asks
          for, in one round trip per namespace, as the SDK's receiver does; ``N`` fetches
          up to ``N`` ahead of a smaller ask (a quiet queue then waits 0.2 s in the SDK for
          messages that are not there). ``prefetch`` is geobus's older name for it. The
          SDK links themselves do not prefetch: a message geobus fetched is one the
          receiver is looking at (docs/sessions.md, "Fetching", for a session receiver).

        Raises:
            RuntimeError: the client is closed.
            ValueError: ``max_wait_time`` not positive, ``prefetch_count`` below 0 (or
                ``prefetch`` below 1, or both given), an unknown ``receive_mode`` or
                ``sub_queue``, or ``sub_queue`` with ``session_id`` (as the SDK: a
                dead-letter queue has no sessions; read it with ``sub_queue`` only).
        """
        options = ReceiverOptions(
            client_identifier=client_identifier, socket_timeout=socket_timeout, session_id=session_id,
            sub_queue=sub_queue, receive_mode=receive_mode, max_wait_time=max_wait_time,
            auto_lock_renewer=auto_lock_renewer, prefetch_count=prefetch_count, prefetch=prefetch,
        )  # fmt: skip
        return self._receiver({"queue": queue_name}, options)

    @overload
    def get_subscription_receiver(
        self, topic_name: str, subscription_name: str, *, client_identifier: str | None = ...,
        socket_timeout: float | None = ..., session_id: None = None, sub_queue: ServiceBusSubQueue | str | None = ...,
        receive_mode: ServiceBusReceiveMode | str = ..., max_wait_time: float | None = ...,
        auto_lock_renewer: Any = ..., prefetch_count: int = ..., prefetch: int | None = ...,
    ) -> Plain: ...
    @overload
    def get_subscription_receiver(
        self, topic_name: str, subscription_name: str, *, client_identifier: str | None = ...,
        socket_timeout: float | None = ..., session_id: str | ServiceBusSessionFilter,
        sub_queue: ServiceBusSubQueue | str | None = ..., receive_mode: ServiceBusReceiveMode | str = ...,
        max_wait_time: float | None = ..., auto_lock_renewer: Any = ..., prefetch_count: int = ...,
        prefetch: int | None = ...,
    ) -> Session: ...
    def get_subscription_receiver(
        self,
        topic_name: str,
        subscription_name: str,
        *,
        client_identifier: str | None = None,
        socket_timeout: float | None = None,
        session_id: str | ServiceBusSessionFilter | None = None,
        sub_queue: ServiceBusSubQueue | str | None = None,
        receive_mode: ServiceBusReceiveMode | str = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None,
        auto_lock_renewer: Any = None,
        prefetch_count: int = 0,
        prefetch: int | None = None,
    ) -> Plain | Session:
        """A ``DedupReceiver`` of ``subscription_name`` of ``topic_name`` on both namespaces (with
        ``session_id``, a ``DedupSessionReceiver``); options and errors as ``get_queue_receiver``."""
        options = ReceiverOptions(
            client_identifier=client_identifier, socket_timeout=socket_timeout, session_id=session_id,
            sub_queue=sub_queue, receive_mode=receive_mode, max_wait_time=max_wait_time,
            auto_lock_renewer=auto_lock_renewer, prefetch_count=prefetch_count, prefetch=prefetch,
        )  # fmt: skip
        return self._receiver({"topic": topic_name, "subscription": subscription_name}, options)


class SessionListings(Generic[Listing]):
    """``list_queue_sessions`` and ``list_subscription_sessions`` over ``self._list_sessions``."""

    def _list_sessions(
        self, entity: dict[str, str], state_updated_after: datetime.datetime | None, timeout: float | None
    ) -> Listing:  # pragma: no cover
        """The session ids of ``entity`` (``{"queue": name}`` or ``{"topic": ..., "subscription": ...}``)."""
        raise NotImplementedError

    def list_queue_sessions(
        self,
        queue_name: str,
        *,
        state_updated_after: datetime.datetime | None = None,
        timeout: float | None = None,
    ) -> Listing:
        """The session ids with messages or state in ``queue_name`` on either namespace, each
        once: from ``geobus`` a list, from ``geobus.aio`` an async iterator
        (``async for session_id in client.list_queue_sessions(queue)``).

        Unlike the SDK's pager there are no pages: both namespaces are asked at once, each
        within ``timeout`` (default ``deadlines.send``). A namespace that does not answer is
        left out and logged; a session it alone holds is then missing from the list.

        Raises (``geobus.aio``: on iteration):
            ReplicationError: neither namespace answered (``causes`` says why).
            ValueError: ``timeout`` is not positive.
        """
        return self._list_sessions({"queue": queue_name}, state_updated_after, timeout)

    def list_subscription_sessions(
        self,
        topic_name: str,
        subscription_name: str,
        *,
        state_updated_after: datetime.datetime | None = None,
        timeout: float | None = None,
    ) -> Listing:
        """The session ids of a subscription on either namespace, each once; as
        ``list_queue_sessions``."""
        entity = {"topic": topic_name, "subscription": subscription_name}
        return self._list_sessions(entity, state_updated_after, timeout)
