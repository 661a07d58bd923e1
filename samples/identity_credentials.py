"""Azure AD credentials: two namespaces and one azure-identity credential, no keys.

Shows: ``GeoServiceBusClient.from_namespaces(primary, secondary, DefaultAzureCredential())``
(any azure-identity credential, sync or async, works), and the same by
configuration: GEOBUS_PRIMARY_NAMESPACE with GEOBUS_PRIMARY_CREDENTIAL
(default, managed_identity, workload_identity, cli, environment), or
``credential = "..."`` in TOML (see geobus.toml).

Against Azure (the identity needs the "Azure Service Bus Data Sender" role on both):

    export GEOBUS_PRIMARY_NAMESPACE=contoso-weu.servicebus.windows.net
    export GEOBUS_SECONDARY_NAMESPACE=contoso-neu.servicebus.windows.net
    az login        # or a managed identity, workload identity, AZURE_* variables
    python samples/identity_credentials.py

Locally there is no Azure AD (local namespaces accept SAS only): the sample
builds the configuration it would use, contacts nobody with it, and sends with
the local namespaces' connection strings instead, saying so.
"""

from __future__ import annotations

import os
import sys

from azure.identity import DefaultAzureCredential
from azure.servicebus import ServiceBusMessage

from geobus import GeoServiceBusClient, ReplicationConfig

from _local import namespaces

QUEUE = "orders"


def send_one(client: GeoServiceBusClient) -> str:
    with client.get_queue_sender(QUEUE) as sender:
        result = sender.send_messages(ServiceBusMessage("hello", message_id="identity-sample"))
    return " + ".join(result.landed)


def main() -> int:
    primary = os.environ.get("GEOBUS_PRIMARY_NAMESPACE")
    secondary = os.environ.get("GEOBUS_SECONDARY_NAMESPACE")
    mode = os.environ.get("GEOBUS_MODE", "passive")

    # One credential for both namespaces; geobus asks it for tokens when it connects.
    with DefaultAzureCredential() as credential:
        if primary and secondary:
            with GeoServiceBusClient.from_namespaces(primary, secondary, credential, mode=mode) as client:
                print(f"{client!r} with {type(credential).__name__}")
                print(f"sent with Azure AD: landed on {send_one(client)}")
            return 0

        # Creating a credential and a configuration contacts nobody: the shape, offline.
        shape = ReplicationConfig.from_namespaces(
            "contoso-weu.servicebus.windows.net", "contoso-neu.servicebus.windows.net", credential, mode=mode
        )
        print("with Azure AD the configuration would be:")
        for namespace in shape.namespaces:
            print(f"  {namespace!r}")

    print(
        "note: GEOBUS_PRIMARY_NAMESPACE/GEOBUS_SECONDARY_NAMESPACE are not set: sending with "
        "connection strings instead (local namespaces accept SAS only, no Azure AD)"
    )
    with namespaces() as ns, GeoServiceBusClient(ns.config) as client:
        print(f"sent with connection strings to {ns.describe()}: landed on {send_one(client)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
