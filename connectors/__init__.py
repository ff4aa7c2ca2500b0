"""Connector plugins shipped with roomlink, one package per platform.

Each registers itself under the ``roomlink.connectors`` entry-point group; the core
finds connector types only through that group, exactly as it finds third-party ones.
"""
