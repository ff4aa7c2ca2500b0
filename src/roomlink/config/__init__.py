"""The config file: reading the YAML with line numbers, ``${VAR}`` and located errors
(:mod:`.document`), the models ``roomlink check`` validates with (:mod:`.models`),
building them from a file (:mod:`.load`: :func:`load_config`), their JSON Schema for
editors (:mod:`.jsonschema`) and what an admin should hear before a start
(:mod:`.preflight`). ``Config``, ``ConfigError`` and ``load_config`` are importable
from here.

May import :mod:`roomlink.errors`, :mod:`roomlink.message`, :mod:`roomlink.connector`
(connector types and their options), :mod:`roomlink.store` (store URLs) and
:mod:`roomlink.record` (signing keys); never the message path or the operator's surface.
"""

from roomlink.config.document import ConfigError, ConfigIssue
from roomlink.config.load import load_config
from roomlink.config.models import Config

__all__ = ["Config", "ConfigError", "ConfigIssue", "load_config"]
