"""Exports of a party's record: jsonl, a self-contained HTML transcript, mbox, plain text.

Rows stream from the store a page at a time, in the order ``verify`` checks; the writers
keep no more than a bounded cache of recent texts (to show what an edit or delete
changed), so a million-message store exports in bounded memory. The HTML transcript
renders the canonical markup and marks an edited or deleted message where it stands,
without a script (printed, mailed or opened with scripts off, it still shows); for that
a first pass collects which messages changed, one small entry per changed message.

With a files folder (``history export --files DIR``) every kept file a written record
refers to is copied, a chunk at a time, to ``DIR/<first 16 hex digits of its sha256>/
<its cleaned name>`` (see :mod:`roomlink.record.exportfiles`); the HTML transcript then
shows images inline and links the other files, jsonl gives each attachment its
``path``, and mbox attaches the files as MIME parts.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from roomlink.message.markup import to_html
from roomlink.message.model import Attachment, Kind, Message
from roomlink.record.exportfiles import FileCopier, base64_lines, media_type, size_text
from roomlink.record.sign import digest_line
from roomlink.record.verify import Break, Walker, rows_in_order
from roomlink.store import Store

FORMATS = ("jsonl", "html", "mbox", "text")
_CACHE = 10_000  # recent (author, text) by id, for edits/deletes/replies; older: a lookup
Known = tuple[str, str] | None  # (author name, latest text) of an earlier message
Changes = dict[str, tuple[Kind, str]]  # message id -> (EDIT | DELETE, id of the change)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class _Known:
    """(author, text) of recent messages, bounded; older ones are looked up in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def put(self, m: Message) -> None:
        self.cache[m.id] = (m.author.name, m.text)
        if len(self.cache) > _CACHE:
            self.cache.popitem(last=False)

    async def get(self, message_id: str | None) -> tuple[str, str] | None:
        if message_id is None:
            return None
        found = self.cache.get(message_id)
        if found is None:
            row = await self.store.record_row(message_id)
            if row is not None:
                found = (row.author_name, row.text)
        return found


class Writer:
    # True: the writer marks a message edited or deleted where it stands, so it must
    # know before writing it (a first pass collects the changes)
    wants_changes = False

    def __init__(self, out: BinaryIO, party: str, pipes: list[str],
                 files: FileCopier | None = None) -> None:
        self.out = out
        self.party = party
        self.pipes = pipes
        self.files = files  # the files copied beside the export, when asked for
        self.changes: Changes = {}  # filled before begin() for a writer that wants_changes
        self.at = (0, "")  # (position in its pipe, chain head before it), recomputed

    def copied(self, att: Attachment) -> Path | None:
        """Where ``att``'s bytes were copied (None: not asked, or not kept)."""
        return None if self.files is None else self.files.path_of(att)

    def href(self, att: Attachment) -> str | None:
        """A relative link from the export to ``att``'s copy."""
        return None if self.files is None else self.files.href_of(att)

    def write(self, text: str) -> None:
        self.out.write(text.encode("utf-8", "surrogateescape"))

    def begin(self) -> None:
        pass

    def message(
        self, seq: int, chain: str | None, m: Message, earlier: Known, replied: Known
    ) -> None:
        raise NotImplementedError

    def end(self, digests: list[str], breaks: list[Break]) -> None:
        pass


class JsonlWriter(Writer):
    def message(
        self, seq: int, chain: str | None, m: Message, earlier: Known, replied: Known
    ) -> None:
        # position and previous: enough to recompute the chain (`history compare --against`)
        record = {"seq": seq, **m.model_dump(mode="json"), "chain": chain,
                  "position": self.at[0], "previous": self.at[1]}
        for att, dumped in zip(m.attachments, record["attachments"], strict=True):
            path = None if self.files is None else self.files.relative_of(att)
            if path is not None:
                dumped["path"] = path  # the copy beside the export
        self.write(json.dumps(record, ensure_ascii=False) + "\n")


def _clock(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M")


class TextWriter(Writer):
    def message(
        self, seq: int, chain: str | None, m: Message, earlier: Known, replied: Known
    ) -> None:
        a = m.author
        pipe = f"#{m.pipe} " if len(self.pipes) > 1 else ""
        who = f"{a.name} ({a.party}/{a.platform})"
        text = m.text.replace("\r\n", "\n").replace("\n", "\n    ")
        line = f"[{_clock(m.ts)}] {pipe}"
        if m.kind == Kind.ACTION:
            line += f"* {who} {text}"
        elif m.kind == Kind.EDIT:
            line += f"{who} edited {m.target}: {text}"
        elif m.kind == Kind.DELETE:
            line += f"{who} deleted {m.target}"
        elif m.kind in (Kind.JOIN, Kind.PART, Kind.TOPIC):
            line += f"-- {who} {m.kind.value}: {text}".rstrip(": ")
        else:
            reply = f" (in reply to {replied[0]})" if replied else ""
            line += f"{who}{reply}: {text}"
        for att in m.attachments:
            line += f"\n    {_attachment_line(att, self.href(att))}"
        self.write(line.replace("\r", "") + "\n")

    def end(self, digests: list[str], breaks: list[Break]) -> None:
        for d in digests:
            self.write(f"-- {d}\n")
        for b in breaks:
            self.write(f"-- WARNING: {b}\n")


def _attachment_line(att: Attachment, href: str | None) -> str:
    """One line that says what a file was: name, type, size, digest, where it is."""
    what = ", ".join(x for x in (att.mime, size_text(att.size)) if x)
    line = f"[attachment: {att.name or att.url or 'file'}" + (f" ({what})" if what else "")
    if att.sha256:
        line += f" sha256:{att.sha256}"
    where = href or att.url
    if where:
        line += f" <{where}>"
    if att.note:
        line += f" — {att.note}"
    return _CONTROL.sub(" ", line) + "]"


def _header(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()


def _local(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip(".-") or "user"


def _encoded(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not ASCII."""
    value = _header(value)
    return value if value.isascii() else Header(value, "utf-8").encode()


def _address(name: str, addr: str) -> str:
    return formataddr((_header(name), addr), charset="utf-8")


_FROM_LINE = re.compile(r"^(>*From )", re.M)


class MboxWriter(Writer):
    """One mail per record; threaded by pipe (References to the pipe's root id) and by
    reply/edit/delete (In-Reply-To the message concerned). mboxrd ``>From`` quoting.

    Written by hand rather than through ``email.message``: the standard library's header
    objects made this export 10 times slower than the others (bench/README.md); the
    output still parses with Python's ``mailbox`` (tests/record/test_export.py).
    """

    def message(
        self, seq: int, chain: str | None, m: Message, earlier: Known, replied: Known
    ) -> None:
        a = m.author
        first = m.text.split("\n", 1)[0]
        prefix = {Kind.EDIT: "Edit: ", Kind.DELETE: "Deleted: "}.get(m.kind, "")
        if m.kind == Kind.DELETE and earlier:
            first = earlier[1].split("\n", 1)[0]
        first = _header(first)[:70] or f"({m.kind.value})"
        root = f"<pipe.{quote(m.pipe, safe='')}@roomlink.invalid>"
        parent = m.reply_to or m.target
        refs = [root]
        if parent:
            refs.append(f"<{quote(parent, safe='')}@roomlink.invalid>")
        headers = [
            ("From", _address(f"{a.name} ({a.party}/{a.platform})",
                              f"{_local(a.id or a.name)}@{_local(a.party)}.roomlink.invalid")),
            ("To", _address(m.pipe, f"{_local(m.pipe)}@roomlink.invalid")),
            ("Subject", _encoded(f"[{m.pipe}] {prefix}{first}")),
            ("Date", format_datetime(m.ts)),
            ("Message-ID", f"<{quote(m.id, safe='')}@roomlink.invalid>"),
            ("In-Reply-To", refs[-1]),
            ("References", " ".join(refs)),
            ("X-Roomlink-Pipe", _encoded(m.pipe)),
            ("X-Roomlink-Kind", m.kind.value),
            ("X-Roomlink-Chain", chain or "-"),
            ("MIME-Version", "1.0"),
        ]
        body = m.text
        if m.kind == Kind.DELETE and earlier:
            body = f"[deleted; the message said:]\n{earlier[1]}"
        elif m.kind == Kind.EDIT and earlier:
            body = f"{m.text}\n\n[edited; earlier text:]\n{earlier[1]}"
        for att in m.attachments:
            body += f"\n{_attachment_line(att, self.href(att))}"
        body = _FROM_LINE.sub(r">\1", body.replace("\r\n", "\n").replace("\r", "\n"))
        copies = [(att, path) for att in m.attachments if (path := self.copied(att))]
        plain = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
        if copies:  # the files go along as MIME parts (base64: no line starts "From ")
            boundary = f"roomlink-{quote(m.id, safe='')}"
            headers.append(("Content-Type", f'multipart/mixed; boundary="{boundary}"'))
        head = "".join(f"{k}: {v}\n" for k, v in headers)
        self.write(f"From roomlink@roomlink.invalid {time.asctime(m.ts.timetuple())}\n{head}")
        if not copies:
            self.write(f"{plain}\n{body}\n\n")
            return
        self.write(f"\n--{boundary}\n{plain}\n{body}\n")
        for att, path in copies:
            name = _header(att.name or "file")
            quoted = quote(name, safe="")
            self.write(f"--{boundary}\nContent-Type: {media_type(att.mime)}; "
                       f"name*=utf-8''{quoted}\nContent-Disposition: attachment; "
                       f"filename*=utf-8''{quoted}\nContent-Transfer-Encoding: base64\n\n")
            for lines in base64_lines(path):
                self.write(lines)
        self.write(f"--{boundary}--\n\n")


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;
max-width:52rem;padding:1rem 1.5rem;color:#1d1d1f;background:#fff}
h1{font-size:1.4rem;margin:.2rem 0}.meta{color:#666;font-size:.85rem}
h2.day{font-size:.95rem;color:#555;border-bottom:1px solid #ddd;margin:1.6rem 0 .6rem;
padding-bottom:.2rem}
article.msg{padding:.35rem .6rem;margin:.15rem 0;border-radius:6px}
article.msg:target{background:#fff6cc}
.head{font-size:.85rem;color:#555}.author{font-weight:600;color:#1d1d1f}
.via,.pipe{color:#777}.text{overflow-wrap:anywhere}.text p{margin:0 0 .3rem}
.text pre{white-space:pre-wrap;background:#f4f4f4;padding:.3rem}
.action>p:first-of-type{display:inline}
a.reply{display:block;font-size:.8rem;color:#3a6;border-left:3px solid #3a6;
padding-left:.4rem;margin:.1rem 0;text-decoration:none}
.note{font-size:.85rem;color:#a50;margin:.1rem 0}
article.kind-delete .text,article.deleted>.text{text-decoration:line-through;color:#888}
article.edited>.text{color:#555}
.flag{font-size:.75rem;color:#a50;margin-left:.4rem}
details{font-size:.85rem;color:#555}footer{margin-top:2rem;border-top:1px solid #ddd}
footer pre{white-space:pre-wrap;font-size:.8rem;background:#f4f4f4;padding:.5rem}
.broken{color:#b00;font-weight:600}
figure.att{margin:.3rem 0}figure.att img{max-width:100%;max-height:24rem;
border:1px solid #ddd;border-radius:4px}figcaption,.att{font-size:.85rem;color:#555}
"""

# raster images a browser shows without running anything (never SVG: it can hold script)
_INLINE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif"})


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _safe_url(url: str) -> str | None:
    return url if re.match(r"(?i)^(https?|mailto):", url) else None


class HtmlWriter(Writer):
    wants_changes = True

    def begin(self) -> None:
        self._day: str | None = None
        title = f"Transcript of {', '.join(self.pipes)} — record of {self.party}"
        self.write(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<header><h1>{_e(title)}</h1><p class=\"meta\">Exported by roomlink from the "
            f"store of party {_e(self.party)}. Times are UTC.</p></header>\n<main>\n"
        )

    def message(
        self, seq: int, chain: str | None, m: Message, earlier: Known, replied: Known
    ) -> None:
        day = m.ts.strftime("%A, %d %B %Y")
        if day != self._day:
            self._day = day
            self.write(f"<h2 class=\"day\">{_e(day)}</h2>\n")
        a = m.author
        target = f" data-target=\"{_e(m.target)}\"" if m.target else ""
        # an edited or deleted message is marked where it stands, linking to the change:
        # in print and with scripts off too
        changed = self.changes.get(m.id)
        state, flag = "", ""
        if changed is not None:
            word = "deleted" if changed[0] == Kind.DELETE else "edited"
            state = f" {word}"
            flag = f" <a class=\"flag\" href=\"#m-{_e(changed[1])}\">({word})</a>"
        parts = [
            f"<article class=\"msg kind-{m.kind.value}{state}\" id=\"m-{_e(m.id)}\" "
            f"data-id=\"{_e(m.id)}\" data-kind=\"{m.kind.value}\"{target}>",
            f"<div class=\"head\"><time datetime=\"{m.ts.isoformat()}\">"
            f"{m.ts.strftime('%H:%M')}</time> <span class=\"author\">{_e(a.name)}</span> "
            f"<span class=\"via\">({_e(a.party)}/{_e(a.platform)})</span>"
            + (f" <span class=\"pipe\">#{_e(m.pipe)}</span>" if len(self.pipes) > 1 else "")
            + flag + "</div>",
        ]
        if m.reply_to:
            quoted = f"{replied[0]}: {replied[1][:80]}" if replied else "a message"
            parts.append(f"<a class=\"reply\" href=\"#m-{_e(m.reply_to)}\">↪ in reply to "
                         f"{_e(quoted)}</a>")
        link = f"<a href=\"#m-{_e(m.target or '')}\">a message</a>"
        if m.kind == Kind.EDIT:
            parts.append(f"<p class=\"note\">✎ edited {link}; the new text:</p>")
            parts.append(f"<div class=\"text\">{to_html(m.text)}</div>")
            if earlier:
                parts.append("<details><summary>earlier text</summary>"
                             f"<div class=\"text\">{to_html(earlier[1])}</div></details>")
        elif m.kind == Kind.DELETE:
            parts.append(f"<p class=\"note\">✗ deleted {link}; the record keeps what it "
                         "said:</p>")
            parts.append(f"<div class=\"text\">{to_html(earlier[1]) if earlier else ''}</div>")
        elif m.kind == Kind.ACTION:
            parts.append(f"<div class=\"text action\"><em>* {_e(a.name)}</em> "
                         f"{to_html(m.text)}</div>")
        else:
            parts.append(f"<div class=\"text\">{to_html(m.text)}</div>")
        parts.extend(self._attachment(att) for att in m.attachments)
        parts.append("</article>\n")
        self.write("".join(parts))

    def _attachment(self, att: Attachment) -> str:
        """An image copied beside the export is shown; another file copied is linked; a
        file not copied is named (with the platform's link when it is a web address)."""
        name = _e(att.name or att.url or "file")
        what = ", ".join(x for x in (att.mime, size_text(att.size)) if x)
        caption = name + (f" <span class=\"via\">({_e(what)})</span>" if what else "")
        if att.note:
            caption += f" <span class=\"note\">{_e(att.note)}</span>"
        href = self.href(att)
        if href is not None and media_type(att.mime) in _INLINE:
            return (f"<figure class=\"att\"><a href=\"{_e(href)}\"><img src=\"{_e(href)}\" "
                    f"alt=\"{name}\" loading=\"lazy\"></a><figcaption>{caption}</figcaption>"
                    "</figure>")
        url = href or _safe_url(att.url or "")
        if url:
            return f"<div class=\"att\">Attachment: <a href=\"{_e(url)}\">{caption}</a></div>"
        return f"<div class=\"att\">Attachment: {caption}</div>"

    def end(self, digests: list[str], breaks: list[Break]) -> None:
        self.write("</main>\n<footer><h2>Digest</h2><p class=\"meta\">Compare these lines "
                   "with another party's <code>roomlink history digest</code>.</p>")
        for d in digests:
            self.write(f"<pre class=\"digest\">{_e(d)}</pre>")
        for b in breaks:
            self.write(f"<p class=\"broken\">The record does not verify: {_e(str(b))}</p>")
        if not breaks:
            self.write("<p class=\"meta\">Every chain verified when this was exported.</p>")
        self.write("</footer>\n</body></html>\n")


WRITERS: dict[str, type[Writer]] = {
    "jsonl": JsonlWriter, "html": HtmlWriter, "mbox": MboxWriter, "text": TextWriter,
}  # fmt: skip


async def export(
    store: Store,
    fmt: str,
    out: BinaryIO,
    pipe: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], object] | None = None,
    files: FileCopier | None = None,
) -> int:
    """Write the record (of one pipe) in ``fmt``; returns how many records were written.
    With ``files``, the files of the records written are copied there first."""
    pipes = [pipe] if pipe else await store.pipes()
    writer = WRITERS[fmt](out, store.party, pipes, files)
    if writer.wants_changes:
        writer.changes = await _changes(store, pipe)
    walker = Walker(await store.anchors())
    known = _Known(store)
    digests: dict[str, str] = {}
    written = 0
    writer.begin()
    async for row in rows_in_order(store, pipe):
        previous = walker.pipe(row.pipe).head
        walk = walker.feed(row)
        if progress is not None:
            progress(1)
        m = row.message()
        if (since is None or m.ts >= since) and (until is None or m.ts < until):
            earlier = await known.get(m.target) if m.target else None
            replied = await known.get(m.reply_to) if m.reply_to else None
            if files is not None:
                await files.copy(store, m.attachments)
            writer.at = (walk.count, previous)
            writer.message(row.seq, row.chain, m, earlier, replied)
            digests[m.pipe] = digest_line(*walk.digest_fields())
            written += 1
        if m.kind == Kind.EDIT and m.target:
            known.cache[m.target] = (m.author.name, m.text)
        known.put(m)
    breaks = [w.broken for w in walker.pipes.values() if w.broken is not None]
    writer.end([digests[p] for p in sorted(digests)], breaks)
    return written


async def _changes(store: Store, pipe: str | None) -> Changes:
    """Which messages were edited or deleted, and by which record: a first pass over the
    record, holding one entry per changed message (never the texts)."""
    changes: Changes = {}
    async for row in rows_in_order(store, pipe):
        m = row.message()
        if m.target and m.kind in (Kind.EDIT, Kind.DELETE):
            if changes.get(m.target, (None,))[0] != Kind.DELETE:  # a delete stays so
                changes[m.target] = (m.kind, m.id)
    return changes
