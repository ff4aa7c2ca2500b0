"""The party's record: hash chains, verification, digests, signatures, exports, search
and retention over a party's store (issue 11). ``chain`` is what the stores call while
recording; the rest runs from the ``roomlink history`` commands and the daemon's
retention job."""
