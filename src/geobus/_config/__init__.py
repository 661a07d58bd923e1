"""Configuration: two namespaces, the replication mode and the policies.

Every setting is validated when its dataclass is built; a bad one raises
``ConfigurationError`` naming the field (``primary.connection_string``,
``deadlines.attempt``). Switching active and passive replication is a change of
``mode`` only — in code, in the environment (``GEOBUS_MODE``) or in a TOML file.

- ``checks``: how a setting is declared (a field with its check), checked and named.
- ``choices``: the enums a setting chooses from (``ReplicationMode``, ``DedupKey``...).
- ``namespace``: ``NamespaceConfig``, one namespace and how geobus signs in to it.
- ``policies``: ``Deadlines``, ``SdkRetryPolicy``, ``DedupPolicy``, ``BreakerPolicy``,
  ``FailbackPolicy``, ``OutboxPolicy``, ``OverridePolicy``.
- ``replication``: ``ReplicationConfig``, its loaders, and ``SETTINGS``, every setting's
  key in files and its ``GEOBUS_*`` variable, derived from the fields.
- ``sessions``: ``SessionPolicy``, session receivers' order and ownership (``[sessions]``).
- ``sdk_options``: azure-servicebus's ``ServiceBusClient`` options, as the client's
  constructors take them (passed on, mapped onto ``SdkRetryPolicy``, or refused).
"""

from .checks import read_toml as read_toml
from .choices import DedupKey as DedupKey
from .choices import FailbackMode as FailbackMode
from .choices import ReplicationMode as ReplicationMode
from .choices import StoreUnavailable as StoreUnavailable
from .choices import WriteQuorum as WriteQuorum
from .namespace import CREDENTIAL_NAMES as CREDENTIAL_NAMES
from .namespace import NamespaceConfig as NamespaceConfig
from .policies import MAX_MESSAGE_ID_LENGTH as MAX_MESSAGE_ID_LENGTH
from .policies import MIN_LEASE as MIN_LEASE
from .policies import BreakerPolicy as BreakerPolicy
from .policies import Deadlines as Deadlines
from .policies import DedupPolicy as DedupPolicy
from .policies import FailbackPolicy as FailbackPolicy
from .policies import OutboxPolicy as OutboxPolicy
from .policies import OverridePolicy as OverridePolicy
from .policies import SdkRetryPolicy as SdkRetryPolicy
from .replication import SETTINGS as SETTINGS
from .replication import ReplicationConfig as ReplicationConfig
from .replication import Setting as Setting
from .sdk_options import CLIENT_OPTIONS as CLIENT_OPTIONS
from .sdk_options import GEOBUS_CLIENT_OPTIONS as GEOBUS_CLIENT_OPTIONS
from .sdk_options import OWNED_OPTIONS as OWNED_OPTIONS
from .sdk_options import RETRY_OPTIONS as RETRY_OPTIONS
from .sessions import SessionPolicy as SessionPolicy
