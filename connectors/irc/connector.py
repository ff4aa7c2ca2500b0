"""``type: irc``: one nick on one IRC server; rooms are channel names.

Inbound, channel messages and /me actions are relayed (joins, parts, quits, nick and
topic changes too; the pipe's ``join_part`` and ``topic`` switches decide whether they
travel). Outbound, canonical text is rendered with IRC formatting codes, each line
prefixed with the author's name and cut to fit the 512-byte line limit. IRC has no
message ids, so every send returns a fresh one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from irc.client import Event, is_channel
from irc.strings import lower

from roomlink.connector import Connector, ConnectorOptions, Limits
from roomlink.message.markup import escape
from roomlink.message.model import Inbound, InboundAuthor, Kind, Outbound, utcnow

from .lines import LINE_LIMIT, no_ping, prefix_length, render_irc, split_lines, to_canonical
from .options import IrcOptions
from .session import Session

NAME_PREFIXES = "~&@%+"  # channel status marks in a NAMES reply


class IrcConnector(Connector):
    platform = "irc"
    Options = IrcOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, IrcOptions)
        self.opts = options
        self.session = Session(options, list(ctx.rooms), self._on_event, ctx.log)
        self._relayed = {lower(r): r for r in ctx.inbound_rooms}
        self._ignored = {lower(n) for n in options.ignore_nicks}
        self._members: dict[str, set[str]] = {}  # folded channel -> folded nicks in it
        self._inbox: asyncio.Queue[Inbound] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    @property
    def limits(self) -> Limits:
        # the core must not split: only the connector knows the byte budget of a line;
        # pacing is per line too, inside the session
        return Limits(max_text_length=None, can_impersonate=False,
                      default_nick_format="<{nick}> ")

    async def start(self) -> None:
        self._pump = asyncio.create_task(self._hand_in_loop(), name=f"{self.ctx.name} inbound")
        self.session.start()

    async def stop(self) -> None:
        await self.session.stop()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        # JOIN and PART only these channels: no QUIT, the others stay joined
        self._relayed = {lower(r): r for r in self.ctx.inbound_rooms}
        for room in removed:
            self._members.pop(lower(room), None)
        self.session.change_rooms(added, removed)

    def is_connected(self) -> bool:
        return self.session.connected

    def is_ready(self, room: str) -> bool:
        return self.session.is_joined(room)

    async def wait_ready(self, room: str) -> None:
        await self.session.wait_joined(room)

    # -- outbound ----------------------------------------------------------------------
    def render(self, out: Outbound) -> list[str]:
        """The PRIVMSG texts for one message part."""
        m, s = out.message, self.session
        nick, display = m.author.name, out.display_name
        if self.opts.no_ping_nicks:
            display, nick = no_ping(display, nick), no_ping(nick, nick)
        text = out.text
        if out.part == out.parts - 1 and m.attachments:
            # a file known by its platform URL only; the core gave kept files and noted
            # ones a line of their own in the text (no files on IRC)
            text += "".join(f"\n{escape(a.name or 'file')}: <{a.url}>" for a in m.attachments
                            if a.url and not a.sha256 and not a.note)
        prefix = {
            Kind.ACTION: f"* {nick} ",
            Kind.JOIN: f"* {nick} ",
            Kind.PART: f"* {nick} ",
            Kind.TOPIC: f"* {nick} changed the topic to: ",
        }.get(m.kind, display)
        budget = LINE_LIMIT - 2 - prefix_length(s.nick, s.user, s.host, out.room)
        return split_lines(render_irc(text, self.opts.formatting), prefix, budget,
                           self.opts.max_lines)

    async def send(self, out: Outbound) -> str:
        lines = self.render(out)
        if lines:
            await self.session.send_lines(out.room, lines)
        return uuid.uuid4().hex  # IRC has no ids; one is needed to record the delivery

    # -- inbound -----------------------------------------------------------------------
    def _on_event(self, event: Event, from_me: bool) -> None:
        kind, target, args = event.type, event.target, event.arguments
        nick = getattr(event.source, "nick", None) if event.source else None
        if kind == "namreply" and len(args) >= 3:
            names = {lower(n.lstrip(NAME_PREFIXES)) for n in args[2].split()}
            self._members.setdefault(lower(args[1]), set()).update(names)
            return
        if kind == "disconnect":
            self._members.clear()
            return
        if from_me:  # the bridge's own doings are never relayed
            if kind == "join" and target:
                self._members[lower(target)] = set()  # a NAMES reply follows
            return
        if not nick:
            return
        folded = lower(nick)
        if kind in ("pubmsg", "action") and target and is_channel(target) and args:
            if folded not in self._ignored:
                self._emit(target, nick, to_canonical(args[0]),
                           Kind.ACTION if kind == "action" else Kind.MESSAGE)
        elif kind == "join" and target:
            self._members.setdefault(lower(target), set()).add(folded)
            self._emit(target, nick, escape("joined"), Kind.JOIN)
        elif kind == "part" and target:
            self._members.get(lower(target), set()).discard(folded)
            self._emit(target, nick, _with_reason("left", args), Kind.PART)
        elif kind == "kick" and target and args:
            victim = args[0]
            self._members.get(lower(target), set()).discard(lower(victim))
            if lower(victim) != lower(self.session.nick):
                self._emit(target, victim, _with_reason(f"was kicked by {nick}", args[1:]),
                           Kind.PART)
        elif kind == "quit":
            for channel in self._channels_of(folded, remove=True):
                self._emit(channel, nick, _with_reason("quit", args), Kind.PART)
        elif kind == "nick" and target:
            for channel in self._channels_of(folded, rename=lower(target)):
                self._emit(channel, target, escape(f"{nick} is now known as {target}"), Kind.JOIN)
        elif kind == "topic" and target and args:
            self._emit(target, nick, to_canonical(args[0]), Kind.TOPIC)

    def _channels_of(self, nick: str, remove: bool = False, rename: str | None = None
                     ) -> list[str]:
        found = []
        for channel, members in self._members.items():
            if nick in members:
                found.append(channel)
                if remove or rename:
                    members.discard(nick)
                if rename:
                    members.add(rename)
        return found

    def _emit(self, channel: str, nick: str, text: str, kind: Kind) -> None:
        room = self._relayed.get(lower(channel))
        if room is None or lower(nick) in self._ignored:
            return
        self._inbox.put_nowait(Inbound(room=room, author=InboundAuthor(name=nick), text=text,
                                       kind=kind, ts=utcnow()))

    async def _hand_in_loop(self) -> None:
        """Hand events in one by one, in order (IRC cannot replay: store failures are
        retried inside hand_in); stop when roomlink shuts down."""
        while True:
            inbound = await self._inbox.get()
            if not await self.ctx.hand_in(inbound):
                return


def _with_reason(what: str, args: list[str]) -> str:
    reason = args[0].strip() if args and args[0] else ""
    return escape(f"{what} ({reason})" if reason else what)
