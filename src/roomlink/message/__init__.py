"""The message: the canonical model every platform and every store shares
(:mod:`.model`), the canonical rich text and its renderers (:mod:`.markup`), and
splitting text for platforms with a length limit (:mod:`.textsplit`).

Pure data and text: may import :mod:`roomlink.errors` only.
"""
