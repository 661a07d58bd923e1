"""Sample helper, not part of geobus: the two namespaces a sample talks to.

Start two local namespaces unless GEOBUS_PRIMARY_* is set; return a ReplicationConfig.

- GEOBUS_PRIMARY_* / GEOBUS_SECONDARY_* set: the configuration is
  ``ReplicationConfig.from_env()``, exactly as a deployed application reads it.
- Otherwise two local namespaces (``geobus.local``) start on 127.0.0.1 and the
  same ``from_env()`` reads every other GEOBUS_* variable (GEOBUS_MODE...) with
  their connection strings filled in.

It also sets up logging for the samples: geobus's warnings (a failover, a
reconnect) on stderr, the SDK's own retry chatter hidden. Nothing here prints a
connection string or a key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from geobus import ReplicationConfig
from geobus.local import LocalNamespace, development_key

_NAMESPACE_VARIABLES = tuple(
    f"GEOBUS_{role}_{suffix}"
    for role in ("PRIMARY", "SECONDARY")
    for suffix in ("CONNECTION_STRING", "NAMESPACE", "CREDENTIAL")
)
# Messages locked on a connection that an outage cut come back when their lock
# expires, as in Service Bus; a short lock keeps the fault samples short.
LOCAL_LOCK_DURATION = 5.0


@dataclass(frozen=True)
class Namespaces:
    """A sample's configuration, and the local namespaces behind it (None against Azure)."""

    config: ReplicationConfig
    primary: LocalNamespace | None = None
    secondary: LocalNamespace | None = None

    @property
    def local(self) -> bool:
        return self.primary is not None

    def describe(self) -> str:
        """Where the sample runs: host names and ports only, never a key."""
        where = "local namespaces" if self.local else "namespaces from GEOBUS_*"
        hosts = ", ".join(f"{ns.name} {ns.fully_qualified_namespace}" for ns in self.config.namespaces)
        return f"{where} ({hosts}), {self.config.mode.value} mode"


def configured_in_environment() -> bool:
    """True when GEOBUS_PRIMARY_* names the primary namespace (Azure, usually)."""
    return any(os.environ.get(name) for name in _NAMESPACE_VARIABLES if name.startswith("GEOBUS_PRIMARY_"))


@contextmanager
def namespaces(
    *,
    local_only: bool = False,
    topics: Mapping[str, Iterable[str]] | None = None,
) -> Iterator[Namespaces]:
    """The namespaces to run against; local ones are stopped on the way out.

    ``local_only``: the sample injects faults, which only a local namespace
    takes; GEOBUS_PRIMARY_* / GEOBUS_SECONDARY_* are ignored (and a note says so).
    ``topics``: topics and their subscriptions to declare on local namespaces
    (on Azure they must exist already).
    """
    quiet_sdk_logs()
    if configured_in_environment() and not local_only:
        yield Namespaces(ReplicationConfig.from_env())
        return
    if configured_in_environment():
        print(
            "note: this sample takes namespaces down, which only local ones allow; "
            "it ignores GEOBUS_PRIMARY_*/GEOBUS_SECONDARY_* and starts two local namespaces"
        )
    with ExitStack() as stack:
        local = [
            # Each its own key, as two Azure namespaces have.
            stack.enter_context(
                LocalNamespace(lock_duration=LOCAL_LOCK_DURATION, topics=topics, key=development_key(n))
            )
            for n in (1, 2)
        ]
        environ = {name: value for name, value in os.environ.items() if name not in _NAMESPACE_VARIABLES}
        environ["GEOBUS_PRIMARY_CONNECTION_STRING"] = local[0].connection_string
        environ["GEOBUS_SECONDARY_CONNECTION_STRING"] = local[1].connection_string
        yield Namespaces(ReplicationConfig.from_env(environ), local[0], local[1])


def quiet_sdk_logs() -> None:
    """geobus's own warnings (failovers, reconnects) on stderr; the SDK's retry chatter hidden."""
    logging.basicConfig(format="%(levelname)s %(message)s", level=logging.WARNING)
    logging.getLogger("azure").setLevel(logging.CRITICAL)
