"""`roomlink check` on Slack connector configs: what an admin gets wrong is named."""

from __future__ import annotations

from pathlib import Path

import yaml
from slackkit import SlackServer, bridge_config

from rlkit import run_cli


def _check(tmp_path: Path, slack: SlackServer, change: dict[str, object],
           room: str = "#acme-project") -> tuple[int, str]:
    path, _ = bridge_config(tmp_path, slack, room=room)
    config = yaml.safe_load(path.read_text())
    config["connectors"]["agency-slack"].update(change)
    config["connectors"]["agency-slack"] = {
        k: v for k, v in config["connectors"]["agency-slack"].items() if v is not None}
    path.write_text(yaml.safe_dump(config))
    done = run_cli("check", "-c", str(path))
    return done.returncode, done.stdout + done.stderr


async def test_check_names_slack_config_mistakes(tmp_path: Path, slack: SlackServer) -> None:
    assert _check(tmp_path, slack, {})[0] == 0
    code, out = _check(tmp_path, slack, {"app_token": None})
    assert code == 2 and "connectors.agency-slack.app_token" in out
    code, out = _check(tmp_path, slack, {"post_as_autor": True})
    assert code == 2 and "did you mean 'post_as_author'" in out
    code, out = _check(tmp_path, slack, {"api_url": "slack.com/api"})
    assert code == 2 and "api_url" in out
    code, out = _check(tmp_path, slack, {}, room="#not a channel")
    assert code == 2 and "a Slack room is a channel name" in out
    code, out = _check(tmp_path, slack, {"bot_token": "xoxb-very-secret"}, room="#bad room")
    assert code == 2 and "xoxb-very-secret" not in out
