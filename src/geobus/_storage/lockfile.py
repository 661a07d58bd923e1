"""One process at a time per file: an advisory lock in a file beside it.

``<name>.lock`` is held (``flock``, exclusive) for as long as its owner runs and
names the owning process, so the next one can say who holds it. The lock goes
with the process, even after a ``kill -9``. Not on Windows: there, no guard.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO


class Held(Exception):
    """Another process holds the lock; ``str()`` names it as it wrote itself down."""


def lock_beside(path: Path) -> IO[bytes] | None:
    """Take the lock of ``path`` (the file ``<path>.lock``), or None where there are no locks.

    Close the handle (``unlock``) to release it.

    Raises:
        OSError: the lock file cannot be created or opened.
        Held: another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process guard
        return None
    handle = open(path.with_name(path.name + ".lock"), "a+b")  # noqa: SIM115 - held while the owner runs
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "another process"
        handle.close()
        raise Held(holder) from None
    handle.truncate(0)
    handle.write(f"process {os.getpid()}".encode())
    handle.flush()
    return handle


def unlock(handle: IO[bytes] | None) -> None:
    """Release a lock ``lock_beside`` took. Safe with None."""
    if handle is not None:
        handle.close()  # closing the descriptor releases the flock
