"""``ReplicationConfig``: the two namespaces, the mode and the policies, and its loaders.

Three loaders share one path: ``from_env`` and ``from_file`` build the same nested
mapping that ``from_mapping`` takes. Every name they read comes from the dataclass
fields (``SETTINGS``): a setting's key in files is ``table.field`` and its variable
is ``GEOBUS_TABLE_FIELD``, both spelt from the field names, with the few exceptions
in the fields' metadata (``GEOBUS_DEADLINE_*``, ``GEOBUS_PRIMARY_NAMESPACE``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from .._errors import ConfigurationError
from .checks import (
    Checked,
    TOMLDecodeError,
    checked,
    choice,
    env_part,
    in_files,
    read_toml,
    reject_unknown,
    table_of,
)
from .choices import ReplicationMode, WriteQuorum
from .namespace import NamespaceConfig, identity
from .policies import (
    BreakerPolicy,
    Deadlines,
    DedupPolicy,
    FailbackPolicy,
    OutboxPolicy,
    OverridePolicy,
    SdkRetryPolicy,
)
from .sdk_options import CLIENT_OPTIONS, RETRY_OPTIONS, backoff_total, split
from .sessions import SessionPolicy


def _namespace(role: str, namespace: Any) -> NamespaceConfig:
    """A namespace without a name is named after its role (``primary``, ``secondary``)."""
    if not isinstance(namespace, NamespaceConfig):
        raise ConfigurationError(role, "must be a NamespaceConfig")
    return namespace if namespace.name is not None else replace(namespace, name=role)


@dataclass(frozen=True)
class ReplicationConfig(Checked):
    """Everything a ``GeoServiceBusClient`` needs.

    Raises:
        ConfigurationError: a field is missing or invalid (the message names it).
    """

    primary: NamespaceConfig = field(metadata=checked(_namespace, table=NamespaceConfig))
    secondary: NamespaceConfig = field(metadata=checked(_namespace, table=NamespaceConfig))
    mode: ReplicationMode = field(default=ReplicationMode.PASSIVE, metadata=choice(ReplicationMode))
    write_quorum: WriteQuorum = field(default=WriteQuorum.ANY, metadata=choice(WriteQuorum))
    deadlines: Deadlines = field(default_factory=Deadlines, metadata=checked(table=Deadlines, env="DEADLINE"))
    retry: SdkRetryPolicy = field(default_factory=SdkRetryPolicy, metadata=checked(table=SdkRetryPolicy))
    dedup: DedupPolicy = field(default_factory=DedupPolicy, metadata=checked(table=DedupPolicy))
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy, metadata=checked(table=BreakerPolicy))
    failback: FailbackPolicy = field(default_factory=FailbackPolicy, metadata=checked(table=FailbackPolicy))
    outbox: OutboxPolicy = field(default_factory=OutboxPolicy, metadata=checked(table=OutboxPolicy))
    override: OverridePolicy = field(default_factory=OverridePolicy, metadata=checked(table=OverridePolicy))
    sessions: SessionPolicy = field(default_factory=SessionPolicy, metadata=checked(table=SessionPolicy))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.primary.name == self.secondary.name:
            raise ConfigurationError("secondary.name", f"both namespaces are named {self.primary.name!r}")
        if identity(self.primary) == identity(self.secondary):
            raise ConfigurationError(
                "secondary",
                f"primary and secondary are the same namespace ({self.secondary.fully_qualified_namespace}); "
                "geobus needs two",
            )

    @property
    def namespaces(self) -> tuple[NamespaceConfig, NamespaceConfig]:
        """``(primary, secondary)``."""
        return (self.primary, self.secondary)

    # -- loaders -----------------------------------------------------------------

    @classmethod
    def from_connection_strings(cls, primary: str, secondary: str, **options: Any) -> ReplicationConfig:
        """Two connection strings; ``options`` are the other fields (``mode="active"``...) and
        azure-servicebus's client options (``logging_enable=True``, ``retry_total=2``...), as
        ``with_sdk_options`` takes them.

        Raises:
            ConfigurationError: a bad or unknown option (``field`` names it).
        """
        fields_given, client, retry = _sort_options(options)
        # Named here, so an error says which one is wrong (``secondary.connection_string``).
        config = cls(
            primary=NamespaceConfig(name="primary", connection_string=primary, client_options=client),
            secondary=NamespaceConfig(name="secondary", connection_string=secondary, client_options=client),
            **fields_given,
        )
        return config._with_retry(retry)

    @classmethod
    def from_namespaces(cls, primary: str, secondary: str, credential: Any, **options: Any) -> ReplicationConfig:
        """Two fully qualified namespaces and one azure-identity credential; ``options`` as
        ``from_connection_strings``."""
        fields_given, client, retry = _sort_options(options)
        config = cls(
            primary=NamespaceConfig(
                name="primary", fully_qualified_namespace=primary, credential=credential, client_options=client
            ),
            secondary=NamespaceConfig(
                name="secondary", fully_qualified_namespace=secondary, credential=credential, client_options=client
            ),
            **fields_given,
        )
        return config._with_retry(retry)

    def with_sdk_options(self, **options: Any) -> ReplicationConfig:
        """This configuration with azure-servicebus ``ServiceBusClient`` options applied.

        - ``logging_enable``, ``transport_type``, ``http_proxy``, ``user_agent``,
          ``custom_endpoint_address``, ``connection_verify``, ``ssl_context``,
          ``socket_timeout``, ``uamqp_transport`` (``CLIENT_OPTIONS``) go to both
          namespaces' clients, over their own ``client_options``. ``logging_enable``
          must be a ``bool`` (stricter than the SDK); a ``custom_endpoint_address``
          given here sends both namespaces to one address (a gateway that routes by
          host name): an endpoint per region belongs in each ``client_options``;
        - ``retry_total``, ``retry_backoff_factor``, ``retry_backoff_max``, ``retry_mode``
          set ``retry`` (``SdkRetryPolicy``): the SDK's retries inside one namespace's
          attempt. Those not given keep geobus's values, not the SDK's defaults (3 retries
          of up to 120 s, more than ``deadlines.attempt``);
        - ``try_timeout`` is refused: ``deadlines.attempt`` is geobus's (``OWNED_OPTIONS``).

        Raises:
            ConfigurationError: an unknown option, a client option of the wrong type,
                ``try_timeout``, ``uamqp_transport=True``, or retries whose waits alone
                outlast ``deadlines.attempt`` (they could never run). ``field`` names the
                option; the message never quotes its value.
        """
        others, client, retry = split(options)
        for option in others:
            raise ConfigurationError(option, f"not a ServiceBusClient option geobus knows ({_known_options()})")
        config = self
        if client:
            config = replace(
                config,
                primary=replace(self.primary, client_options={**self.primary.client_options, **client}),
                secondary=replace(self.secondary, client_options={**self.secondary.client_options, **client}),
            )
        return config._with_retry(retry)

    def _with_retry(self, retry: dict[str, Any]) -> ReplicationConfig:
        """``retry``'s fields (from the SDK's ``retry_*`` options) over this config's policy."""
        if not retry:
            return self
        sdk_names = {field_name: option for option, field_name in RETRY_OPTIONS.items()}
        try:
            policy = replace(self.retry, **retry)
        except ConfigurationError as exc:
            option = sdk_names.get(exc.field.removeprefix("retry."), exc.field)
            raise ConfigurationError(option, exc.problem) from None
        waits = backoff_total(policy.total, policy.backoff_factor, policy.backoff_max, policy.mode)
        if waits >= self.deadlines.attempt:
            raise ConfigurationError(
                sdk_names[next(iter(retry))],
                f"the SDK's waits between {policy.total} retries add up to {waits:g} s, not less than "
                f"deadlines.attempt ({self.deadlines.attempt:g} s), which bounds each namespace's attempt, "
                "retries included: the last retries could never run. Lower retry_total or the backoff, "
                "or raise deadlines.attempt",
            )
        return replace(self, retry=policy)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ReplicationConfig:
        """Build from a nested mapping (the shape of the TOML file).

        Raises:
            ConfigurationError: an unknown key, a missing namespace or a bad value.
        """
        data = dict(mapping)
        reject_unknown("", data, {f.name for f in fields(cls)})
        options: dict[str, Any] = {}
        for f in fields(cls):
            table = table_of(f)
            given = data.get(f.name)
            if table is None:
                if f.name in data:
                    options[f.name] = given
            elif table is NamespaceConfig:
                if not isinstance(given, Mapping):
                    raise ConfigurationError(
                        f.name, "is missing (a table with connection_string, or fully_qualified_namespace and credential)"
                    )
                reject_unknown(f.name, given, _keys(table))
                # Named before it is checked, so its errors say primary.credential.
                options[f.name] = NamespaceConfig(**{"name": f.name, **given})
            elif given is not None:
                if not isinstance(given, Mapping):
                    raise ConfigurationError(f.name, "must be a table")
                reject_unknown(f.name, given, _keys(table))
                options[f.name] = table(**given)
        return cls(**options)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ReplicationConfig:
        """Read a TOML file (see the README's configuration reference).

        Raises:
            ConfigurationError: the file is missing, not TOML, or has a bad value.
        """
        try:
            data = read_toml(path)
        except FileNotFoundError:
            raise ConfigurationError("file", f"{os.fspath(path)!r} does not exist") from None
        except TOMLDecodeError as exc:
            raise ConfigurationError("file", f"{os.fspath(path)!r} is not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReplicationConfig:
        """Read ``GEOBUS_*`` variables (see the README's configuration reference).

        A namespace given by ``GEOBUS_<ROLE>_NAMESPACE`` without a credential uses
        ``DefaultAzureCredential``.

        Raises:
            ConfigurationError: a variable is missing or has a bad value.
        """
        env = os.environ if environ is None else environ
        known = {s.env: s.key for s in SETTINGS if s.env is not None}
        for variable in env:
            if not variable.startswith("GEOBUS_") or variable.startswith("GEOBUS_LOCAL_"):
                continue
            # A misspelt GEOBUS_OUTBOX_PTH, or GEOBUS_OUTBOX_PATH='', must not quietly mean "no outbox".
            if variable not in known:
                raise ConfigurationError(variable, "unknown geobus environment variable (see the README's configuration reference)")
            if not env[variable].strip():
                raise ConfigurationError(variable, "is set but empty: unset it to use the default")
        data: dict[str, Any] = {role: {} for role in _ROLES}  # named in errors when missing
        for variable, key in known.items():
            if variable in env:
                table, _, name = key.rpartition(".")
                target = data.setdefault(table, {}) if table else data
                target[name] = env[variable]
        for role in _ROLES:
            if "fully_qualified_namespace" in data[role]:
                data[role].setdefault("credential", "default")
        return cls.from_mapping(data)


class Setting(NamedTuple):
    """One setting outside code: its key in files and mappings, its environment variable."""

    key: str
    """``mode``, or ``table.field`` (``deadlines.attempt``)."""
    env: str | None
    """``GEOBUS_DEADLINE_ATTEMPT``; None: files, mappings and code only."""


def _sort_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(ReplicationConfig fields, client options, retry fields)`` of a constructor's options."""
    others, client, retry = split(options)
    known = {f.name for f in fields(ReplicationConfig)} - set(_ROLES)
    for option in others:
        if option not in known:
            raise ConfigurationError(
                option,
                f"not a ReplicationConfig field ({', '.join(sorted(known))}) nor a ServiceBusClient "
                f"option geobus knows ({_known_options()})",
            )
    return others, client, retry


def _known_options() -> str:
    return ", ".join(sorted({*CLIENT_OPTIONS, *RETRY_OPTIONS}))


def _keys(table: type) -> set[str]:
    return {f.name for f in fields(table) if in_files(f)}


def _settings() -> tuple[Setting, ...]:
    found = []
    for f in fields(ReplicationConfig):
        table, part = table_of(f), env_part(f)
        if table is None:
            found.append(Setting(f.name, None if part is None else f"GEOBUS_{part}"))
            continue
        for g in fields(table):
            if in_files(g):
                inner = env_part(g)
                found.append(Setting(f"{f.name}.{g.name}", None if inner is None else f"GEOBUS_{part}_{inner}"))
    return tuple(found)


SETTINGS = _settings()
"""Every setting files, mappings and the environment can give, derived from the fields."""

_ROLES = tuple(f.name for f in fields(ReplicationConfig) if table_of(f) is NamespaceConfig)
