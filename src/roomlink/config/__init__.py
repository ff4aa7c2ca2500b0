"""The config file: reading the YAML with line numbers and ``${VAR}`` (:mod:`.loader`),
the models ``roomlink check`` validates with (:mod:`.models`), their JSON Schema for
editors (:mod:`.jsonschema`) and what an admin should hear before a start
(:mod:`.preflight`).

May import :mod:`roomlink.errors`, :mod:`roomlink.message`, :mod:`roomlink.connector`
(connector types and their options), :mod:`roomlink.store` (store URLs) and
:mod:`roomlink.record` (signing keys); never the message path or the operator's surface.
"""
