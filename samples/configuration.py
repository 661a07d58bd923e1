"""Configuration: the same settings from a TOML file, from the environment, or in code.

Shows: ``ReplicationConfig.from_file`` (samples/geobus.toml, commented),
``ReplicationConfig.from_env`` (GEOBUS_* variables), a bad value reported as a
``ConfigurationError`` that names the field, and a client built from the
file's policies. Loading does no I/O beyond reading the file, and a
configuration's repr never shows a key; a geobus.aio client takes the same object.

    python samples/configuration.py

With GEOBUS_PRIMARY_* and GEOBUS_SECONDARY_* set, the environment part reads
your real variables instead of the example below.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from azure.servicebus import ServiceBusMessage

from geobus import ConfigurationError, GeoServiceBusClient, ReplicationConfig

from _local import configured_in_environment, namespaces

TOML = Path(__file__).with_name("geobus.toml")

# What a deployment sets (a container's environment, an app setting...).
EXAMPLE_ENVIRONMENT = {
    "GEOBUS_MODE": "active",
    "GEOBUS_PRIMARY_NAMESPACE": "contoso-weu.servicebus.windows.net",
    "GEOBUS_PRIMARY_CREDENTIAL": "workload_identity",
    "GEOBUS_SECONDARY_NAMESPACE": "contoso-neu.servicebus.windows.net",  # credential: default
    "GEOBUS_DEADLINE_ATTEMPT": "2",
    "GEOBUS_DEADLINE_SEND": "5",
    "GEOBUS_OUTBOX_PATH": "/var/lib/orders/outbox.db",
}


def summary(config: ReplicationConfig) -> str:
    """The settings worth a log line at start-up (namespaces by host name, never a key)."""
    lines = [f"  mode {config.mode.value}, write quorum {config.write_quorum.value}"]
    lines += [f"  {namespace!r}" for namespace in config.namespaces]  # the repr hides keys
    lines.append(
        f"  deadlines: attempt {config.deadlines.attempt:g} s, send {config.deadlines.send:g} s; "
        f"failback {config.failback.mode.value}; outbox {config.outbox.path or 'off'}"
    )
    return "\n".join(lines)


def main() -> int:
    from_file = ReplicationConfig.from_file(TOML)
    print(f"from_file({TOML.name}):\n{summary(from_file)}")

    if configured_in_environment():
        from_env = ReplicationConfig.from_env()  # os.environ
        print(f"from_env() (your GEOBUS_* variables):\n{summary(from_env)}")
    else:
        from_env = ReplicationConfig.from_env(EXAMPLE_ENVIRONMENT)
        print(f"from_env(example):\n{summary(from_env)}")

    try:
        ReplicationConfig.from_env({**EXAMPLE_ENVIRONMENT, "GEOBUS_DEADLINE_ATTEMPT": "-1"})
    except ConfigurationError as exc:
        print(f"a bad value is refused at start-up: {exc}")
    try:
        ReplicationConfig.from_env({**EXAMPLE_ENVIRONMENT, "GEOBUS_OUTBOX_PTH": "/tmp/x.db"})
    except ConfigurationError as exc:
        print(f"so is a misspelt variable: {exc}")

    # The file's policies with the namespaces this sample can reach (local ones by
    # default); the outbox is left off here, as the file's path is a server's.
    with namespaces() as ns:
        config = dataclasses.replace(
            from_file,
            primary=ns.config.primary,
            secondary=ns.config.secondary,
            outbox=dataclasses.replace(from_file.outbox, path=None),
        )
        with GeoServiceBusClient(config) as client, client.get_queue_sender("orders") as sender:
            result = sender.send_messages(ServiceBusMessage("configured", message_id="config-sample"))
        where = "local namespaces" if ns.local else "your namespaces"
        print(
            f"sent with the file's settings ({config.mode.value} mode, failback "
            f"{config.failback.mode.value}) to {where}: landed on {' + '.join(result.landed)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
