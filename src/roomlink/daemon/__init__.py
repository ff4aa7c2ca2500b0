"""The running daemon: the stores, the router, the delivery workers, the connectors and
the admin server wired together (:mod:`.app`), and its periodic jobs.

Above every other package but the command line: may import any of them; only
:mod:`roomlink.cli` imports it.
"""
