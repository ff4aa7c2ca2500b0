"""The jaraco ``irc`` asyncio connection, made safe for a relay.

The library's own ``send_raw`` logs every line (a PASS or IDENTIFY password too) and
its line buffer raises on text that is not UTF-8; a handler that raises inside
``data_received`` would make asyncio drop the whole connection. This subclass fixes all
three, and registers with SASL PLAIN when asked (the asyncio ``connect`` has no SASL).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from typing import Any

from irc.client import Event, ServerNotConnectedError
from irc.client_aio import AioConnection
from irc.connection import AioFactory
from jaraco.stream.buffer import LineBuffer

log = logging.getLogger("roomlink.connector.irc.client")


class FallbackLineBuffer(LineBuffer):  # type: ignore[misc]
    """Lines decoded as UTF-8, or in ``fallback`` when they are not: never lost."""

    fallback = "latin-1"

    def lines(self) -> Iterator[str]:
        for line in super().lines():
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                yield line.decode(self.fallback, "replace")


def buffer_class(fallback: str) -> type[FallbackLineBuffer]:
    return type("Buffer", (FallbackLineBuffer,), {"fallback": fallback})


def ssl_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class RelayConnection(AioConnection):  # type: ignore[misc]
    async def open(
        self,
        server: str,
        port: int,
        nick: str,
        *,
        username: str,
        realname: str,
        password: str | None,
        sasl: bool,
        tls: ssl.SSLContext | None,
        fallback_encoding: str,
    ) -> None:
        """Connect and send the registration (CAP, PASS, NICK, USER)."""
        self.buffer_class = buffer_class(fallback_encoding)
        self.buffer = self.buffer_class()
        self.handlers: dict[str, Any] = {}
        self.real_server_name = ""
        self.real_nickname = nick
        self.server, self.port = server, port
        self.server_address = (server, port)
        self.nickname, self.username, self.ircname = nick, username, realname
        self.password = password
        self.connect_factory = AioFactory(ssl=tls) if tls else AioFactory()
        protocol = self.protocol_class(self, self.reactor.loop)
        self.transport, self.protocol = await self.connect_factory(protocol, self.server_address)
        self.connected = True
        if sasl:
            self.send_raw("CAP REQ :sasl")  # holds registration until CAP END
        if password:
            self.send_raw(f"PASS :{password}")
        self.send_raw(f"NICK {nick}")
        self.send_raw(f"USER {username} 0 * :{realname}")

    def process_data(self, new_data: bytes) -> None:
        self.buffer.feed(new_data)
        for line in self.buffer:
            if not line:
                continue
            try:
                self._process_line(line)
            except Exception:  # one odd line must not cost the connection
                log.exception("could not handle a line from the server: %.200r", line)

    def send_raw(self, string: str) -> None:
        transport: Any = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            raise ServerNotConnectedError("not connected")
        transport.write(self._prep_message(string))

    def disconnect(self, message: str = "") -> None:
        try:
            del self.connected
        except AttributeError:
            return
        transport: Any = getattr(self, "transport", None)
        if transport is not None and not transport.is_closing():
            try:
                self.quit(message)
            except Exception:  # already half closed: nothing to say goodbye on
                pass
            transport.close()
        self._handle_event(Event("disconnect", self.server, "", [message]))

    def abort(self) -> None:
        """Drop the connection now (the server stopped answering): no QUIT, no waiting."""
        transport: Any = getattr(self, "transport", None)
        if transport is not None:
            transport.abort()

