"""Whether the ``local`` extra (python-qpid-proton) is installed: asked here, and only here.

``geobus.local`` and ``geobus.testing`` need it, and so do the commands built on
them (``geobus local``, ``demo``, ``drill``, ``bench``); the library itself does
not. ``geobus.testing`` calls this on import, the ``geobus`` command before it imports
a command built on ``geobus.local``, ``geobus bench`` before it starts a benchmark.
"""

from __future__ import annotations

INSTALL = "pip install 'geobus[local]'"


class MissingExtraError(ImportError):
    """python-qpid-proton cannot be imported; the message names what needs it and the fix."""


def require_local_extra(what: str) -> None:
    """Return if python-qpid-proton imports; else raise, naming ``what`` needs it.

    Raises:
        MissingExtraError: it is not installed (or does not import), chained to the
            import's own error.
    """
    try:
        import proton  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"{what} needs the 'local' extra (python-qpid-proton): {INSTALL}") from exc
