"""The files of a mail, both ways, as pure functions.

In, every attachment part and inline image of a mail (a forwarded mail included, as an
``.eml``) becomes a :class:`MailFile`: its name (or one made up from its type), its type
and its decoded bytes, or the reason they cannot be trusted (broken base64). The
connector streams each into ``ctx.files.keep``; a cleaned name, the size checks and the
notes of what is not kept come from there.

Out, the kept files of a message are attached as MIME parts: the type as the store has
it (``application/octet-stream`` when it is no ``type/subtype``), the name as a
``filename`` parameter, encoded per RFC 2231 beyond ASCII by the standard library, which
also quotes it, so no name can add a header or a parameter.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import errors
from email.message import EmailMessage, Message, MIMEPart

from roomlink.message.filenames import clean_filename

CHUNK = 64 * 1024
DEFAULT_TYPE = "application/octet-stream"
_BROKEN_BASE64 = (errors.InvalidBase64CharactersDefect, errors.InvalidBase64LengthDefect,
                  errors.InvalidBase64PaddingDefect)
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


@dataclass(frozen=True)
class MailFile:
    name: str  # as the mail names it, or made up; cleaned when it is kept
    mime: str
    data: bytes | None  # None: not to be kept (see problem)
    declared_size: int | None = None  # Content-Disposition's size, when given
    problem: str | None = None  # why the bytes are not kept, for people to read

    @property
    def size(self) -> int | None:
        return len(self.data) if self.data is not None else self.declared_size


def _leaves(part: MIMEPart) -> Iterator[MIMEPart]:
    """Every part that is no container, in order; a forwarded mail is one leaf."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for sub in part.iter_parts():
            assert isinstance(sub, MIMEPart)
            yield from _leaves(sub)
    else:
        yield part


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # a parameter no parser makes sense of: as if there were none
        return None
    return str(name) if name else None


def _is_file(part: MIMEPart, body: MIMEPart | None) -> bool:
    """Whether a leaf is a file (an attachment or an inline image), not the text: the
    body and its other renderings (text/plain, text/html without a name) are text."""
    if part is body:
        return False
    if part.get_content_maintype() == "text" and part.get_content_subtype() in ("plain",
                                                                                "html"):
        return _filename(part) is not None or part.get_content_disposition() == "attachment"
    return True


def _declared_size(part: Message) -> int | None:
    value = part.get_param("size", header="content-disposition")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _made_up_name(part: Message, mime: str, index: int) -> str:
    """A name for a part that has none: by what it is, with the extension of its type."""
    if mime == "message/rfc822":
        return f"message-{index}.eml"
    ext = mimetypes.guess_extension(mime) or ".bin"
    stem = "image" if part.get_content_maintype() == "image" else "attachment"
    return f"{stem}-{index}{ext}"


def _decoded(part: MIMEPart) -> tuple[bytes | None, str | None]:
    """The part's bytes, or None and why they cannot be trusted."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        try:
            inner_msg = inner[0] if isinstance(inner, list) else inner
            assert isinstance(inner_msg, Message)
            return inner_msg.as_bytes(), None
        except Exception as exc:
            return None, f"not kept: the forwarded mail cannot be read ({type(exc).__name__})"
    seen = len(part.defects)
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:
        return None, f"not kept: the part cannot be decoded ({type(exc).__name__})"
    if any(isinstance(d, _BROKEN_BASE64) for d in part.defects[seen:]):
        return None, "not kept: its base64 encoding is broken, so its bytes would be wrong"
    if not isinstance(data, bytes):
        return None, "not kept: the part has no content"
    return data, None


def mail_files(msg: EmailMessage) -> list[MailFile]:
    """Every file of ``msg``: attachments, inline images, forwarded mails, in order."""
    body = msg.get_body(preferencelist=("plain", "html"))
    found: list[MailFile] = []
    for part in _leaves(msg):
        if not _is_file(part, body):
            continue
        mime = part.get_content_type()
        name = _filename(part) or _made_up_name(part, mime, len(found) + 1)
        data, problem = _decoded(part)
        found.append(MailFile(name=name, mime=mime, data=data,
                              declared_size=_declared_size(part), problem=problem))
    return found


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


def attach(mail: EmailMessage, name: str | None, mime: str | None, data: bytes) -> None:
    """Add ``data`` to ``mail`` as an attachment named ``name`` of type ``mime``."""
    kind = (mime or "").strip().lower()
    if not _MIME_TYPE.match(kind):
        kind = DEFAULT_TYPE
    maintype, _, subtype = kind.partition("/")
    if maintype in ("multipart", "message"):  # would have to be parsed as mail: as bytes
        maintype, subtype = "application", "octet-stream"
    mail.add_attachment(data, maintype=maintype, subtype=subtype,
                        filename=clean_filename(name))
