"""The operator's surface inside the daemon: the admin HTTP server (:mod:`.server`), what
it reports (:mod:`.status`, :mod:`.page`), live reload (:mod:`.reload`), logging without
secrets (:mod:`.logs`) and the container's health check (:mod:`.healthcheck`).

Each part gets the narrow, typed pieces of the daemon it uses, never the daemon itself.
May import every package below it (errors, message, connector, store, record, config,
relay); never :mod:`roomlink.daemon` or :mod:`roomlink.cli`.
"""
