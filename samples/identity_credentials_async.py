"""Azure AD credentials, async: two namespaces and one azure-identity credential, no keys.

The same scenario as identity_credentials.py with ``geobus.aio`` and
``azure.identity.aio.DefaultAzureCredential``. Async azure-identity credentials
need aiohttp (``pip install aiohttp``); a sync credential works with geobus.aio
too (geobus runs its token calls in a thread).

    export GEOBUS_PRIMARY_NAMESPACE=contoso-weu.servicebus.windows.net
    export GEOBUS_SECONDARY_NAMESPACE=contoso-neu.servicebus.windows.net
    python samples/identity_credentials_async.py

Locally there is no Azure AD (local namespaces accept SAS only): the sample
shows the configuration it would use, by credential name, and sends with the
local namespaces' connection strings instead, saying so.
"""

from __future__ import annotations

import asyncio
import os
import sys

from azure.identity.aio import DefaultAzureCredential
from azure.servicebus import ServiceBusMessage

from geobus import ReplicationConfig
from geobus.aio import GeoServiceBusClient

from _local import namespaces

QUEUE = "orders"


async def send_one(client: GeoServiceBusClient) -> str:
    async with client.get_queue_sender(QUEUE) as sender:
        result = await sender.send_messages(ServiceBusMessage("hello", message_id="identity-sample"))
    return " + ".join(result.landed)


async def main() -> int:
    primary = os.environ.get("GEOBUS_PRIMARY_NAMESPACE")
    secondary = os.environ.get("GEOBUS_SECONDARY_NAMESPACE")
    mode = os.environ.get("GEOBUS_MODE", "passive")

    if primary and secondary:
        # One credential for both namespaces; close it when the client is done with it.
        async with DefaultAzureCredential() as credential:
            async with GeoServiceBusClient.from_namespaces(primary, secondary, credential, mode=mode) as client:
                print(f"{client!r} with {type(credential).__name__}")
                print(f"sent with Azure AD: landed on {await send_one(client)}")
        return 0

    # By name, as in GEOBUS_PRIMARY_CREDENTIAL or TOML: geobus creates the credential
    # when it connects. Building the configuration contacts nobody.
    shape = ReplicationConfig.from_namespaces(
        "contoso-weu.servicebus.windows.net", "contoso-neu.servicebus.windows.net", "default", mode=mode
    )
    print("with Azure AD the configuration would be:")
    for namespace in shape.namespaces:
        print(f"  {namespace!r}")
    print(
        "note: GEOBUS_PRIMARY_NAMESPACE/GEOBUS_SECONDARY_NAMESPACE are not set: sending with "
        "connection strings instead (local namespaces accept SAS only, no Azure AD)"
    )
    with namespaces() as ns:
        async with GeoServiceBusClient(ns.config) as client:
            print(f"sent with connection strings to {ns.describe()}: landed on {await send_one(client)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
