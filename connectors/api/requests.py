"""The API's HTTP answers and request bodies: every error is the documented JSON body,
and a JSON body is read and checked here before it becomes a message."""

from __future__ import annotations

import codecs
import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("roomlink.connector.api")

MAX_AUTHOR = 256


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error answer carries the documented JSON body; nothing becomes a traceback."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.json_response({"error": exc.reason.lower()}, status=exc.status,
                                 headers=headers)
    except Exception:
        log.exception("%s %s: unexpected error", request.method, request.path)
        return error(500, "internal error")


async def json_body(
    request: web.Request, need_text: bool, max_text: int
) -> dict[str, Any] | web.Response:
    """The checked JSON body: ``author``, and ``text`` when the request carries one."""
    charset = request.charset
    if charset is not None and _codec(charset) not in ("utf-8", "ascii"):
        return error(415, "the body must be JSON in UTF-8 (charset=utf-8 or none)")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error(413, "the body is too large")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return error(400, "body is not UTF-8")
    except RecursionError:
        return error(400, "body is nested too deeply")
    except ValueError:
        return error(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    return checked(body, need_text, max_text)


def checked(body: dict[str, Any], need_text: bool, max_text: int) -> dict[str, Any] | web.Response:
    """``body`` when its fields are right, else the error answer."""
    text, author = body.get("text"), body.get("author")
    if need_text and (not isinstance(text, str) or not text.strip()):
        return error(400, "'text' must be a non-empty string")
    if not isinstance(author, str) or not author.strip():
        return error(400, "'author' must be a non-empty string")
    if isinstance(text, str) and len(text) > max_text:
        return error(413, f"'text' is longer than {max_text} characters")
    if len(author) > MAX_AUTHOR:
        return error(400, f"'author' is longer than {MAX_AUTHOR} characters")
    reply_to = body.get("reply_to")
    if reply_to is not None and (not isinstance(reply_to, str) or not reply_to):
        return error(400, "'reply_to' must be a message id")
    return body


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None
