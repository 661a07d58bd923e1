"""What Service Bus fixes about an entity, shared by the local namespace (``geobus.local``)
and ``geobus entities``: the longest time span, the properties fixed at creation, the
statuses, and ISO-8601 durations as .NET writes and reads them.
"""

from __future__ import annotations

import datetime
import re

# TimeSpan.MaxValue (10675199.02:48:05.4775807) to the microsecond a timedelta holds:
# Service Bus's "never" for a time to live or an idle time.
FOREVER_DAYS = 10675199
FOREVER = datetime.timedelta(days=FOREVER_DAYS, hours=2, minutes=48, seconds=5, microseconds=477580)
FOREVER_TEXT = "P10675199DT2H48M5.4775807S"
_NEAR_FOREVER = datetime.timedelta(seconds=1)

# Set when the entity is created: the service refuses an update that changes one.
IMMUTABLE: dict[str, tuple[str, ...]] = {
    "queue": ("requires_session", "requires_duplicate_detection", "enable_partitioning"),
    "topic": ("requires_duplicate_detection", "enable_partitioning"),
    "subscription": ("requires_session",),
}
# Properties azure-servicebus 7.15 reads but never sends (its create and update leave
# them out: ``TopicProperties._to_internal_entity``): the portal or ARM sets them.
UNSENT: dict[str, tuple[str, ...]] = {"topic": ("filtering_messages_before_publishing",)}
# Names as Service Bus takes them: letters, digits, '.', '-', '_' (and '/' inside a queue's
# or topic's path), starting and ending with a letter or digit; a rule may also hold '$'
# (``$Default``).
ENTITY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9_])?")
SUBSCRIPTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9_])?")
RULE_NAME = re.compile(r"[A-Za-z0-9$](?:[A-Za-z0-9._$-]{0,48}[A-Za-z0-9_])?")
# The statuses an entity of each kind can have (EntityStatus).
STATUSES: dict[str, tuple[str, ...]] = {
    "queue": ("Active", "Disabled", "SendDisabled", "ReceiveDisabled"),
    "topic": ("Active", "Disabled", "SendDisabled"),
    "subscription": ("Active", "Disabled", "ReceiveDisabled"),
}


def format_duration(value: datetime.timedelta) -> str:
    """``value`` as .NET's ``XmlConvert`` writes a ``TimeSpan``; ``FOREVER`` or more as
    ``FOREVER_TEXT``."""
    if value >= FOREVER:
        return FOREVER_TEXT
    if value < datetime.timedelta(0):
        return "-" + format_duration(-value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{value.days}D" if value.days else ""
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds or value.microseconds:
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        clock += f"{seconds}{fraction}S"
    if clock:
        text += "T" + clock
    return "P" + text if text else "PT0S"


_DURATION = re.compile(
    r"(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d+))?S)?)?"
)


def parse_duration(text: str) -> datetime.timedelta:
    """An ISO 8601 duration as .NET reads one (a year 365 days, a month 30). A value
    within a second of ``FOREVER`` or beyond is ``FOREVER``: the SDK sends back the
    ``FOREVER_TEXT`` it read as ``...5.477539S`` (its float arithmetic, in
    ``avoid_timedelta_overflow``), and means never.

    Raises:
        ValueError: ``text`` is not an ISO-8601 duration.
    """
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match is None or text.rstrip("T").endswith("P"):
        raise ValueError("not an ISO-8601 duration")
    sign, years, months, weeks, days, hours, minutes, seconds, fraction = match.groups()
    total_days = (
        365 * int(years or 0) + 30 * int(months or 0) + 7 * int(weeks or 0) + int(days or 0)
    )
    microseconds = int((fraction or "")[:6].ljust(6, "0"))
    try:
        value = datetime.timedelta(
            days=total_days,
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=int(seconds or 0),
            microseconds=microseconds,
        )
    except OverflowError:
        value = FOREVER
    if value >= FOREVER - _NEAR_FOREVER:
        value = FOREVER
    return -value if sign else value
