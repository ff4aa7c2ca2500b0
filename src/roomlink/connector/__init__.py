"""The connector plugin surface: everything a connector package imports from the core.

A connector (one package under ``connectors/``, registered under the entry-point group
``roomlink.connectors``) derives from :class:`Connector`, declares its options as a
:class:`ConnectorOptions` model and its :class:`Limits`, and is given a
:class:`ConnectorContext` to hand inbound events in (``ctx.hand_in``, which deals with
:class:`ShuttingDown` and :class:`BadInput` from the core) and keep its cursors. It raises
the errors below from ``send``/``edit``/``delete`` and paces itself with :func:`backoff` and
:class:`TokenBucket`. Import from here, not from the modules behind it.

This package owns the plugin surface, pacing and the HTTP listener that connectors and
the admin server share; it may import :mod:`roomlink.errors` and :mod:`roomlink.message`.
"""

from roomlink.connector.base import (
    ENTRY_POINT_GROUP,
    Connector,
    ConnectorContext,
    ConnectorOptions,
    Limits,
    check_host_port,
    connector_type_names,
    load_connector_type,
)
from roomlink.connector.files import FileRefused, Files
from roomlink.connector.pacing import TokenBucket, backoff
from roomlink.errors import (
    BadInput,
    ConnectorError,
    NotSupported,
    PermanentError,
    RateLimited,
    RoomDown,
    ShuttingDown,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BadInput",
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorOptions",
    "FileRefused",
    "Files",
    "Limits",
    "NotSupported",
    "PermanentError",
    "RateLimited",
    "RoomDown",
    "ShuttingDown",
    "TokenBucket",
    "backoff",
    "check_host_port",
    "connector_type_names",
    "load_connector_type",
]
