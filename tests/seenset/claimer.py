"""A worker process for the cross-process claim tests: ``python claimer.py URL OWNER KEYS SEED [BATCH]``.

Opens the store, prints ``ready``, waits for a line on stdin (so every worker
starts claiming at once), claims keys ``k0``..``k<KEYS-1>`` in an order shuffled by
``SEED`` with a long lease (``BATCH`` keys per ``claim_many`` call; one per ``claim``
call without it), and prints the keys it got as one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from geobus._storage.seenset import BatchSeenSet, Claim, open_seen_set


async def main(url: str, owner: str, keys: int, seed: int, batch: int) -> None:
    store = open_seen_set(url, max_entries=100_000)
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        order = [f"k{i}" for i in range(keys)]
        random.Random(seed).shuffle(order)
        if batch:
            assert isinstance(store, BatchSeenSet)
            chunks = [order[i:i + batch] for i in range(0, keys, batch)]
            answers = [answer for chunk in chunks for answer in await store.claim_many(chunk, owner, 60.0)]
        else:
            answers = [await store.claim(key, owner, 60.0) for key in order]
        won = [key for key, answer in zip(order, answers, strict=True) if answer is Claim.CLAIMED]
        print(json.dumps(won), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                     int(sys.argv[5]) if len(sys.argv) > 5 else 0))
