"""What crosses a link: the instance keys, the handshake that proves them, the frames.

Every connection starts with a fresh challenge each way: the connecting side sends its
key and a nonce; the listening side answers with its key, its own nonce and a signature
of both; the connecting side answers with its signature of both. Each side checks the
other's key against its ``peer_key`` before it signs or accepts anything, so a wrong key
is refused before any message passes. Signatures are bound to the role (``host`` or
``guest``), so one side's answer can never be replayed as the other's.

After the handshake every text frame is one JSON object: ``msg`` (a whole message for one
conversation, numbered ``n``), answered by ``ok`` or ``no`` (refused, with a reason).

Files (files.py): a ``msg`` names its files by name, type, size and SHA-256. Before it
answers, the receiving side asks for each file its stores lack, one at a time:
``{"t": "want", "f": F, "n": N, "sha256": ..., "max": BYTES}`` (``F`` a transfer number it
chose, increasing; ``max`` the most bytes of the file one frame may carry, under its
``max_frame_bytes``). The sending side answers with binary frames (``F`` as 4 bytes, big
endian, then up to ``max`` bytes of the file, in order) and ``{"t": "end", "f": F}``, or
``{"t": "lack", "f": F, "reason": ...}`` when it cannot send it: it sends only a file of
a message it sent and that is not answered yet. ``{"t": "stop", "f": F}``: the receiving
side no longer wants it (over its limit); chunks of a transfer it gave up are dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from roomlink.message.model import Message

VERSION = 1
PREFIX = "ed25519:"
REFUSED = 4003  # close code: the peer's key or proof is not the one configured
MALFORMED = 4400  # close code: a frame that is not the protocol


class Malformed(ValueError):
    """A frame that breaks the protocol: the link is closed with this reason."""


class PeerRefused(Exception):
    """The other side refused this instance during the handshake."""


def parse_public(line: str) -> Ed25519PublicKey:
    line = line.strip()
    if not line.startswith(PREFIX):
        raise ValueError("peer_key must be the line `roomlink instance-id` prints "
                         "(ed25519:...)")
    try:
        raw = base64.b64decode(line[len(PREFIX):], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("peer_key does not hold an Ed25519 public key") from None


def private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("instance.key is not an Ed25519 key")
    return key


def public_line(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return PREFIX + base64.b64encode(raw).decode()


def nonce() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _signed(role: str, first: str, second: str) -> bytes:
    return f"roomlink-link/{VERSION} {role}\n{first}\n{second}".encode()


def prove(key: Ed25519PrivateKey, role: str, theirs: str, mine: str) -> str:
    """Our signature over the peer's fresh nonce (and ours), as ``role``."""
    return base64.b64encode(key.sign(_signed(role, theirs, mine))).decode()


def verify(peer: Ed25519PublicKey, role: str, mine: str, theirs: str, sig: object) -> bool:
    """Whether ``sig`` is the peer's (as ``role``) over our nonce ``mine`` and ``theirs``."""
    if not isinstance(sig, str):
        return False
    try:
        peer.verify(base64.b64decode(sig, validate=True), _signed(role, mine, theirs))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def frame(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise Malformed("a frame that is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        raise Malformed("a frame that is not a JSON object with a type")
    return value


def field(value: dict[str, Any], name: str, kind: type) -> Any:
    got = value.get(name)
    if not isinstance(got, kind) or (isinstance(got, bool) and kind is int):
        raise Malformed(f"a {value.get('t')} frame without a valid {name}")
    return got


@dataclass(frozen=True, slots=True)
class MessageFrame:
    n: int
    room: str
    message: Message


def message_frame(value: dict[str, Any]) -> MessageFrame:
    n, room, body = field(value, "n", int), field(value, "room", str), field(value, "m", dict)
    try:
        message = Message.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise Malformed(f"a message that is not valid ({problems})") from None
    return MessageFrame(n, room, message)


def encode_message(n: int, room: str, message: Message) -> str:
    return json.dumps({"t": "msg", "n": n, "room": room,
                       "m": message.model_dump(mode="json")})
