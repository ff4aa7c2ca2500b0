"""The message path: from an inbound event to every party's store, and on to every other
room of its pipes.

:mod:`.topology` says who is where; :mod:`.router` validates an event and batches it;
:mod:`.ingest` writes each batch into every store at once; :mod:`.delivery` runs one
worker per destination room; :mod:`.replay` reads back what a room received;
:mod:`.metrics` counts it all. May import :mod:`roomlink.errors`, :mod:`roomlink.message`,
:mod:`roomlink.connector` and :mod:`roomlink.store`; never the config, the operator's
surface or the command line.
"""
