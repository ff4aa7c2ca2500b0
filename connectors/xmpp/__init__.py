"""XMPP connector (slixmpp): one account in multi-user chat rooms (XEP-0045)."""

from .connector import XmppConnector

__all__ = ["XmppConnector"]
