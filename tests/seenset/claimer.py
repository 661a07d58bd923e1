"""A worker process for the cross-process claim tests: ``python claimer.py URL OWNER KEYS SEED``.

Opens the store, prints ``ready``, waits for a line on stdin (so every worker
starts claiming at once), claims keys ``k0``..``k<KEYS-1>`` in an order shuffled by
``SEED`` with a long lease, and prints the keys it got as one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from geobus._storage.seenset import Claim, open_seen_set


async def main(url: str, owner: str, keys: int, seed: int) -> None:
    store = open_seen_set(url, max_entries=100_000)
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        order = [f"k{i}" for i in range(keys)]
        random.Random(seed).shuffle(order)
        won = [key for key in order if await store.claim(key, owner, 60.0) is Claim.CLAIMED]
        print(json.dumps(won), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
