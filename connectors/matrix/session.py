"""The bot's session with the homeserver: a matrix-nio client, logged in, keys loaded.

With ``access_token`` the device is asked of the homeserver (``/whoami``); with
``password`` the bot logs in once and keeps the device id and token in the party's store
(as cursors), so a restart is the same device, with the same encryption keys and the
same transaction ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    WhoamiResponse,
)

from roomlink.connector import ConnectorError, PermanentError

from .options import MatrixOptions

GetCursor = Callable[[str], Awaitable[str | None]]
SetCursor = Callable[[str, str], Awaitable[None]]


def key_folder(opts: MatrixOptions, connector: str) -> Path:
    folder = Path(opts.key_store) if opts.key_store else Path("matrix-keys") / connector
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_client(opts: MatrixOptions, connector: str) -> Any:
    config = AsyncClientConfig(
        max_limit_exceeded=0,  # a 429 comes back to us: the core waits it out
        max_timeouts=0,  # a connection error comes back to us: we back off ourselves
        request_timeout=opts.request_timeout,
        encryption_enabled=opts.encryption,
        store_sync_tokens=False,  # the sync token is our cursor, in the party's store
    )
    store = str(key_folder(opts, connector)) if opts.encryption else ""
    return AsyncClient(opts.homeserver, opts.user_id, store_path=store, config=config)


async def log_in(client: Any, opts: MatrixOptions, get: GetCursor, put: SetCursor) -> None:
    """Make ``client`` the bot's device; ConnectorError to retry, PermanentError if never."""
    if opts.access_token is not None:
        client.access_token = opts.access_token.get_secret_value()
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            raise _login_error(who, "the access_token")
        if who.user_id != opts.user_id:
            raise PermanentError(f"the access_token belongs to {who.user_id}, "
                                 f"not to user_id {opts.user_id}")
        if not who.device_id:
            raise PermanentError("the homeserver names no device for the access_token")
        client.restore_login(opts.user_id, who.device_id, client.access_token)
        return
    token, device = await get("access_token"), await get("device_id")
    if token and device:
        client.access_token = token
        who = await client.whoami()
        if isinstance(who, WhoamiResponse):
            client.restore_login(opts.user_id, device, token)
            return
        if getattr(who, "status_code", None) != "M_UNKNOWN_TOKEN":
            raise _login_error(who, "the stored token")
        client.device_id = device  # log in again as the same device, keeping its keys
    assert opts.password is not None
    answer = await client.login(opts.password.get_secret_value(), device_name=opts.device_name)
    if not isinstance(answer, LoginResponse):
        raise _login_error(answer, "the password")
    await put("device_id", answer.device_id)
    await put("access_token", answer.access_token)


def _login_error(answer: Any, what: str) -> ConnectorError:
    code = getattr(answer, "status_code", None)
    if code in ("M_FORBIDDEN", "M_UNKNOWN_TOKEN", "M_USER_DEACTIVATED"):
        return PermanentError(f"the homeserver refuses {what}: {answer}")
    return ConnectorError(f"logging in failed: {answer}")
