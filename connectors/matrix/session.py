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

from roomlink.connector import ConnectorContext, ConnectorError, PermanentError

from .options import MatrixOptions

GetCursor = Callable[[str], Awaitable[str | None]]
SetCursor = Callable[[str, str], Awaitable[None]]


def key_folder(opts: MatrixOptions, ctx: ConnectorContext) -> Path:
    """``key_store``, else ``keys`` in the connector's state folder. A ``matrix-keys``
    folder of an earlier version (in the working directory) is used where it is: moving
    a live key database is a risk, losing it costs every encrypted room its history."""
    if opts.key_store:
        folder = Path(opts.key_store)
    else:
        legacy = Path("matrix-keys") / ctx.name
        if ctx.state_dir is None or (legacy.is_dir() and any(legacy.iterdir())):
            folder = legacy
            if ctx.state_dir is not None:
                ctx.log.info("%s: using the encryption keys in %s (from an earlier version)"
                             "; to keep them beside the store, move it to %s or set "
                             "key_store", ctx.name, legacy.resolve(), ctx.state_dir / "keys")
        else:
            folder = ctx.state_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_client(opts: MatrixOptions, ctx: ConnectorContext) -> Any:
    config = AsyncClientConfig(
        max_limit_exceeded=0,  # a 429 comes back to us: the core waits it out
        max_timeouts=0,  # a connection error comes back to us: we back off ourselves
        request_timeout=opts.request_timeout,
        encryption_enabled=opts.encryption,
        store_sync_tokens=False,  # the sync token is our cursor, in the party's store
    )
    store = str(key_folder(opts, ctx)) if opts.encryption else ""
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
