"""What one delivered part becomes in Slack, and what a failed Web API call becomes.

The text of a post (mrkdwn, with the author's name in front when the bot does not post
under it), the ``username``/``icon_url`` it is posted as, and the comment of a post with
files (an upload cannot carry a ``username``, so the comment names the author) are pure
functions of the part and ``post_as_author``. :func:`call_web_api` runs one Web API call
and turns Slack's answer into the core's errors: a 429 is :class:`RateLimited`, an error
that can never succeed :class:`PermanentError`, editing or deleting what is gone nothing.
They live apart from the connector, which keeps the state (channels, memories, tasks).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from roomlink.connector import ConnectorError, FileRefused, PermanentError, RateLimited
from roomlink.message.model import Kind, Outbound

from .convert import escape_mrkdwn, to_mrkdwn
from .files import REFUSALS, Call

MAX_USERNAME = 80
# Slack's error codes for requests that will fail the same way however often they are sent
PERMANENT = {
    "channel_not_found", "not_in_channel", "is_archived", "msg_too_long", "no_text",
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "missing_scope", "restricted_action", "cant_update_message", "cant_delete_message",
    "edit_window_closed", "invalid_blocks", "too_many_attachments", "invalid_arguments",
    "invalid_arg_name", "channel_is_archived", "access_denied", "ekm_access_denied",
    "team_access_not_granted", "not_allowed_token_type", "as_user_not_supported",
}
# deleting or editing what is no longer there: nothing to do
GONE = {"message_not_found", "file_not_found", "file_deleted"}


def one_line(text: str) -> str:
    """A name for one line of Slack: control characters become spaces."""
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)


def render(out: Outbound, post_as_author: bool) -> str:
    """The mrkdwn text of one part; relayed text never forms a Slack control sequence."""
    m = out.message
    body = to_mrkdwn(out.text)
    if m.kind is Kind.ACTION and body and "\n" not in body:
        body = f"_{body}_"
    elif m.kind in (Kind.JOIN, Kind.PART, Kind.TOPIC):
        body = f"_{escape_mrkdwn(m.author.name)} {body}_" if "\n" not in body else body
    if out.part == out.parts - 1 and m.attachments:
        links = [f"<{escape_mrkdwn(a.url or '').replace('|', '%7C')}|"
                 f"{escape_mrkdwn(a.name or 'file')}>"
                 for a in m.attachments if a.url and a.url.startswith(("https://", "http://"))]
        body = "\n".join([body, *links]) if body else "\n".join(links)
    if not post_as_author:
        body = escape_mrkdwn(one_line(out.display_name)) + body
    return body or " "


def identity(out: Outbound, post_as_author: bool) -> dict[str, str]:
    """The ``username`` and ``icon_url`` a part is posted under (none: the bot's own)."""
    if not post_as_author:
        return {}
    name = one_line(out.display_name).strip() or one_line(out.message.author.name)
    posted_as = {"username": name[:MAX_USERNAME] or "someone"}
    avatar = out.message.author.avatar_url
    if avatar and avatar.startswith("https://") and len(avatar) < 2000:
        posted_as["icon_url"] = avatar
    return posted_as


def file_comment(out: Outbound, post_as_author: bool) -> str:
    """The text of a post with files: it cannot carry a ``username``, so it names
    the author itself."""
    body = render(out, post_as_author).strip()
    if not post_as_author:
        return body
    name = escape_mrkdwn(identity(out, post_as_author)["username"])
    return f"*{name}*: {body}" if body else f"*{name}*"


async def call_web_api(log: logging.Logger, connector_name: str, method: str, call: Call,
                       /, **args: Any) -> AsyncSlackResponse:
    """``call(**args)``, Slack's answer or failure mapped to what the core does next.
    The leading parameters are positional-only so that no Slack argument can clash."""
    try:
        return await call(**args)
    except SlackApiError as exc:
        status = exc.response.status_code
        code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if status == 429 or code == "ratelimited":
            retry_after = exc.response.headers.get("Retry-After", "1")
            try:
                wait = float(retry_after)
            except ValueError:
                wait = 1.0
            raise RateLimited(f"{method}: ratelimited", retry_after=wait) from None
        if code in REFUSALS and method.startswith("files."):
            raise FileRefused(f"{method}: {code}") from None
        if code in GONE and method in ("chat.delete", "chat.update", "files.delete"):
            log.info("%s: %s: %s; nothing to change", connector_name, method, code)
            gone: AsyncSlackResponse = exc.response
            return gone
        if code in PERMANENT:
            raise PermanentError(f"{method}: {code}") from None
        raise ConnectorError(f"{method}: {code or f'HTTP {status}'}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ConnectorError(f"{method}: {type(exc).__name__}: {exc}") from None
