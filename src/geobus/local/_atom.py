"""The Atom XML of Service Bus's administration API: documents in and out, and values.

``ServiceBusAdministrationClient`` sends an entity as an Atom ``entry`` whose
``content`` holds a ``QueueDescription`` (``TopicDescription``, ...) in the
``servicebus/connect`` namespace, and reads back entries and ``feed``s of them. This
module writes those documents (as text, so that every namespace prefix is the one the
service uses: ``i`` for XML Schema instance, ``d2p1`` for message counts, ``d6p1`` for
a rule parameter's type) and reads a request's description element
(``description_of``). The service's value forms: durations as .NET writes a
``TimeSpan`` (``PT1M``, ``P10675199DT2H48M5.4775807S`` for never) and times in UTC
with a ``Z``.

A request the service would refuse raises ``AdminError(400, ...)``: a body that is not
XML (or declares a DTD), that is not an entry, or a value that does not parse.
``_atom_entities`` and ``_atom_rules`` build on this for entities and rules.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from .._entity_facts import format_duration as format_duration  # what the XML writes
from .._entity_facts import parse_duration as _parse_duration
from ._admin_model import AdminError

ATOM_NS = "http://www.w3.org/2005/Atom"
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
COUNTS_NS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"

ENTRY_TYPE = "application/atom+xml;type=entry;charset=utf-8"
FEED_TYPE = "application/atom+xml;type=feed;charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"

# The attributes a description element opens with: its namespace and the ``i`` prefix.
DESCRIPTION_NAMESPACES = f'xmlns="{SB_NS}" xmlns:i="{XSI_NS}"'

_XSI_TYPE = f"{{{XSI_NS}}}type"
_XSI_NIL = f"{{{XSI_NS}}}nil"
_DTD = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_SHOWN = 80  # characters of a refused value quoted back in an error


# -- values ------------------------------------------------------------------------


def parse_duration(text: str, what: str = "duration") -> datetime.timedelta:
    """``_entity_facts.parse_duration``, refusing what is not a duration as the service does."""
    try:
        return _parse_duration(text)
    except ValueError:
        raise _bad_value(what, text.strip()) from None


def format_time(value: datetime.datetime, *, fraction: bool = True) -> str:
    """``value`` in UTC as the service writes it: ``2024-03-01T08:30:00.123Z``."""
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction and value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?")


def parse_time(text: str, what: str = "dateTime") -> datetime.datetime:
    """An XML Schema ``dateTime`` (any number of fraction digits; UTC when it names no
    offset), timezone-aware."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise _bad_value(what, text)
    stamp, fraction, zone = match.groups()
    try:
        value = datetime.datetime.fromisoformat(stamp)
        if zone and zone != "Z":
            value = value.replace(
                tzinfo=datetime.datetime.strptime(zone.replace(":", ""), "%z").tzinfo
            )
        else:
            value = value.replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise _bad_value(what, text) from None
    return value.replace(microsecond=int((fraction or "")[:6].ljust(6, "0")))


def parse_bool(text: str, what: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise _bad_value(what, text)


def parse_int(text: str, what: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,20}", value):
        raise _bad_value(what, text)
    return int(value)


def format_bool(value: bool) -> str:
    return "true" if value else "false"


def _bad_value(what: str, text: str) -> AdminError:
    shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return AdminError(400, f"The value '{shown}' is not valid for {what}.")


# -- writing -----------------------------------------------------------------------


def element(name: str, text: str, attributes: str = "") -> str:
    """``<name attributes>text</name>``, the text escaped."""
    opening = f"{name} {attributes}" if attributes else name
    return f"<{opening}>{escape(text)}</{name}>"


def entry(
    *,
    url: str,
    title: str,
    published: datetime.datetime | None,
    updated: datetime.datetime,
    author: str | None,
    content: str,
) -> str:
    """An Atom entry carrying one description element (``content``, already XML)."""
    parts = [
        f'<entry xmlns="{ATOM_NS}">',
        element("id", url),
        element("title", title, 'type="text"'),
    ]
    if published is not None:
        parts.append(element("published", format_time(published, fraction=False)))
    parts.append(element("updated", format_time(updated, fraction=False)))
    if author is not None:
        parts.append(f"<author>{element('name', author)}</author>")
    parts.append(f'<link rel="self" href={quoteattr(url)}/>')
    parts.append(f'<content type="application/xml">{content}</content></entry>')
    return "".join(parts)


def feed(
    *,
    url: str,
    title: str,
    updated: datetime.datetime,
    entries: Iterable[str],
    next_url: str | None = None,
) -> str:
    """An Atom feed of entries: a ``self`` link, then a ``next`` link while more remain
    (the SDK pages for as long as a feed has two links)."""
    links = f'<link rel="self" href={quoteattr(url)}/>'
    if next_url is not None:
        links += f'<link rel="next" href={quoteattr(next_url)}/>'
    head = element("title", title, 'type="text"') + element("id", url)
    head += element("updated", format_time(updated, fraction=False)) + links
    return f'<feed xmlns="{ATOM_NS}">{head}{"".join(entries)}</feed>'


def empty_feed(updated: datetime.datetime) -> str:
    """What the service answers a GET of an entity that does not exist."""
    return (
        f'<feed xmlns="{ATOM_NS}"><title type="text">Publicly Listed Services</title>'
        '<subtitle type="text">This is the list of publicly-listed services currently available.'
        f"</subtitle><id>uuid:00000000-0000-0000-0000-000000000000;id=1</id>"
        f"{element('updated', format_time(updated, fraction=False))}"
        "<generator>Service Bus 1.1</generator></feed>"
    )


def error(status: int, detail: str) -> str:
    """The service's error body."""
    return f"<Error><Code>{status}</Code><Detail>{escape(detail)}</Detail></Error>"


# -- reading -----------------------------------------------------------------------


def local_name(node: ElementTree.Element) -> str:
    """A tag without its namespace (the client's namespaces are the service's; this reads
    a description whichever prefixes or defaults a client declared)."""
    return node.tag.rpartition("}")[2] if isinstance(node.tag, str) else ""


def description_of(body: bytes) -> ElementTree.Element:
    """The description element (``QueueDescription``, ``RuleDescription``...) inside the
    Atom entry a PUT carries."""
    if not body.strip():
        raise AdminError(400, "The request has no body: an Atom entry was expected.")
    if _DTD.search(body):
        raise AdminError(400, "The request body declares a DTD, which is not allowed.")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise AdminError(400, f"The request body is not well-formed XML ({exc}).") from None
    if local_name(root) != "entry":
        raise AdminError(400, f"The request body is a '{local_name(root)}', not an Atom entry.")
    content = next((node for node in root if local_name(node) == "content"), None)
    description = next(iter(content), None) if content is not None else None
    if description is None:
        raise AdminError(400, "The Atom entry has no content with a description in it.")
    return description


def children(node: ElementTree.Element) -> list[tuple[str, ElementTree.Element]]:
    """A node's child elements by local name, in order, leaving out those marked
    ``i:nil="true"`` (a value not given)."""
    return [
        (local_name(child), child)
        for child in node
        if child.get(_XSI_NIL, "").strip().lower() != "true"
    ]


def child(node: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((found for tag, found in children(node) if tag == name), None)


def text_of(node: ElementTree.Element | None) -> str | None:
    """A node's text ("" for an empty element), or None for no node."""
    if node is None:
        return None
    return node.text or ""


def xsi_type(node: ElementTree.Element) -> str | None:
    """The ``i:type`` of a node without its prefix (``SqlFilter``, ``int``...)."""
    value = node.get(_XSI_TYPE)
    return value.strip().rpartition(":")[2] if value is not None else None
