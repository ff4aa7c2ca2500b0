"""The party's record: verification, digests, signatures, exports, search, comparison
and retention over a party's store (issue 11).

This package owns what the ``roomlink history`` commands and the daemon's retention pass
do with a store's record; it reads and cuts only through the store contract
(``roomlink.store.Store``: pages of rows in order, anchors, chain heads, search, the
retention cut), never with SQL of its own. The hash chain itself is
``roomlink.store.chain``, since every store computes it while appending. It may import
``roomlink.store`` and ``roomlink.message`` only.
"""
