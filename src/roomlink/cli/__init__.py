"""The ``roomlink`` command line: the entry point and ``run``/``check`` (:mod:`.main`),
the operator's commands ``reload``, ``outbox``, ``schema`` (:mod:`.admin`), ``history``
and ``keygen`` (:mod:`.history`, :mod:`.history_actions`) and ``watch``.

The top of the tree: may import any package; nothing imports it.
"""
