"""Digest lines and their Ed25519 signatures (the ``cryptography`` library).

A digest line (version 1)::

    roomlink-digest/1 pipe=<pipe> count=<records> last=<message id or -> head=<sha-256 hex>

Pipe and id are percent-quoted, so the line has no spaces of its own. Two parties' lines
are equal exactly when their records of the pipe agree up to ``last``. A signed line goes
on with ``key=<fingerprint> sig=<base64 Ed25519 signature>``; the signature covers
everything before `` sig=``, key included. The fingerprint is the first 16 hex digits of
SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DIGEST_PREFIX = "roomlink-digest/1"
_PRIVATE_PEM = re.compile(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----", re.S)
_PUBLIC_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


class BadKey(ValueError):
    """A key that cannot be used; the text never contains the key."""


def digest_line(pipe: str, count: int, last_id: str | None, head: str) -> str:
    last = quote(last_id, safe="") if last_id else "-"
    return f"{DIGEST_PREFIX} pipe={quote(pipe, safe='')} count={count} last={last} head={head}"


def load_private_key(text: str) -> Ed25519PrivateKey:
    found = _PRIVATE_PEM.search(text)
    if found is None:
        raise BadKey("not an Ed25519 private key: expected the PEM block "
                        "'-----BEGIN PRIVATE KEY-----' that `roomlink keygen` prints")
    try:
        key = serialization.load_pem_private_key(found.group(0).encode(), password=None)
    except (ValueError, TypeError):
        raise BadKey("the private key PEM block does not parse") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey("the private key is not an Ed25519 key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    found = _PUBLIC_PEM.search(text)
    if found is None:
        raise BadKey("not an Ed25519 public key: expected the PEM block "
                        "'-----BEGIN PUBLIC KEY-----' that `roomlink keygen` prints")
    try:
        key = serialization.load_pem_public_key(found.group(0).encode())
    except (ValueError, TypeError):
        raise BadKey("the public key PEM block does not parse") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadKey("the public key is not an Ed25519 key")
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen() -> tuple[str, str]:
    """A new key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


def sign(line: str, key: Ed25519PrivateKey) -> str:
    signed = f"{line} key={fingerprint(key.public_key())}"
    sig = base64.b64encode(key.sign(signed.encode())).decode()
    return f"{signed} sig={sig}"


def check(line: str, key: Ed25519PublicKey) -> tuple[bool, str]:
    """(valid, what to tell the user) for a signed digest line."""
    line = line.strip()
    body, sep, sig = line.rpartition(" sig=")
    if not sep or not line.startswith(DIGEST_PREFIX + " "):
        return False, "not a signed roomlink digest line (no ' sig=' part)"
    unsigned, _, fp = body.rpartition(" key=")
    if fp != fingerprint(key):
        return False, f"signed with key {fp or '?'}, not with this key ({fingerprint(key)})"
    try:
        key.verify(base64.b64decode(sig, validate=True), body.encode())
    except (InvalidSignature, ValueError):
        return False, "the signature does not match the line: it was changed or forged"
    return True, unsigned


INSTANCE_PREFIX = "ed25519:"


def instance_id(private_pem: str) -> str:
    """The one line that names an instance on federation links: ``ed25519:`` and the raw
    public key in base64 (what the other side's ``peer_key`` takes)."""
    raw = load_private_key(private_pem).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return INSTANCE_PREFIX + base64.b64encode(raw).decode()
