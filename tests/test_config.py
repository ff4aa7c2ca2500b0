"""Tests for roomlink.config: valid configs, and every error naming file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from roomlink.config import Config, ConfigError, ConfigIssue, load_config
from roomlink.config.models import DeliveryConfig
from roomlink.connector.base import Connector, ConnectorOptions
from roomlink.message.model import Outbound


class Auth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str
    password: SecretStr


class ChatOptions(ConnectorOptions):
    listen: str
    token: SecretStr | None = None
    port: int = 6667
    auth: Auth | None = None
    mode: str = "plain"

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("plain", "tls"):
            raise ValueError(f"mode {value} is not plain or tls")  # echoes input on purpose
        return value


class ChatConnector(Connector):
    platform = "chat"
    Options = ChatOptions

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def is_ready(self, room: str) -> bool:
        return True

    async def wait_ready(self, room: str) -> None:
        pass

    async def send(self, out: Outbound) -> str:
        return "1"


class SlackConnector(ChatConnector):
    platform = "slack"


TYPES: dict[str, type[Connector]] = {"chat": ChatConnector, "slack": SlackConnector}

VALID = """
parties:
  agency: {store: "sqlite:///data/agency.db"}
  acme: {store: "postgresql://bridge:s3cret-pw@db.example/acme"}
connectors:
  agency-chat: {party: agency, type: chat, listen: "127.0.0.1:8080", token: "${CHAT_TOKEN}"}
  acme-slack: {party: acme, type: slack, listen: "${LISTEN:-0.0.0.0:9000}", port: "7000"}
pipes:
  acme-project:
    nick_format: "<{nick}@{party}> "
    rooms:
      - {connector: agency-chat, room: lobby}
      - {connector: acme-slack, room: -1001234567890, direction: out}
"""

HEAD = """
parties:
  agency: {store: "sqlite:///agency.db"}
connectors:
  a: {party: agency, type: chat, listen: x}
  b: {party: agency, type: slack, listen: y}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roomlink.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    if env is None:
        env = {"CHAT_TOKEN": "tok-default"}
    return load_config(write(tmp_path, text), env=env, types=TYPES)


def fail(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return info.value


def only(err: ConfigError, path: str) -> ConfigIssue:
    found = [issue for issue in err.issues if issue.path == path]
    assert len(found) == 1, str(err)
    return found[0]


# --- valid configs ---


def test_valid_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, VALID, env={"CHAT_TOKEN": "tok-123456"})
    assert cfg.path == (tmp_path / "roomlink.yaml").resolve()
    assert cfg.parties["agency"].store == f"sqlite:///{tmp_path.resolve() / 'data/agency.db'}"
    assert cfg.parties["agency"].store.startswith("sqlite:////")
    assert cfg.parties["acme"].store == "postgresql://bridge:s3cret-pw@db.example/acme"
    chat = cfg.connectors["agency-chat"]
    assert (chat.party, chat.type) == ("agency", "chat")
    assert isinstance(chat.options, ChatOptions)
    assert chat.options.token is not None
    assert chat.options.token.get_secret_value() == "tok-123456"
    slack = cfg.connectors["acme-slack"].options
    assert isinstance(slack, ChatOptions)
    assert slack.listen == "0.0.0.0:9000"  # ${VAR:-default}
    assert slack.port == 7000  # a string from YAML, coerced by the options model
    pipe = cfg.pipes["acme-project"]
    assert pipe.nick_format == "<{nick}@{party}> "
    assert [(r.connector, r.room, r.direction) for r in pipe.rooms] == [
        ("agency-chat", "lobby", "inout"),
        ("acme-slack", "-1001234567890", "out"),
    ]
    assert (pipe.join_part, pipe.topic) == (False, False)
    assert cfg.delivery == DeliveryConfig()


def test_env_default_not_used_when_set_and_literal_dollar(tmp_path: Path) -> None:
    text = VALID.replace('"127.0.0.1:8080"', '"$${literal}-${HOST:-nowhere}"')
    cfg = load(tmp_path, text, env={"CHAT_TOKEN": "t", "LISTEN": "1.2.3.4:5"})
    assert cfg.connectors["acme-slack"].options.listen == "1.2.3.4:5"  # type: ignore[attr-defined]
    assert cfg.connectors["agency-chat"].options.listen == "${literal}-nowhere"  # type: ignore[attr-defined]


def test_env_value_is_never_parsed_as_yaml(tmp_path: Path) -> None:
    evil = "x}\n  evil: {party: agency, type: chat, listen: z"
    cfg = load(tmp_path, VALID, env={"CHAT_TOKEN": evil})
    assert set(cfg.connectors) == {"agency-chat", "acme-slack"}
    token = cfg.connectors["agency-chat"].options.token  # type: ignore[attr-defined]
    assert token.get_secret_value() == evil


def test_sqlite_absolute_and_memory_urls_unchanged(tmp_path: Path) -> None:
    text = VALID.replace("sqlite:///data/agency.db", "sqlite:////var/lib/agency.db")
    assert load(tmp_path, text).parties["agency"].store == "sqlite:////var/lib/agency.db"
    text = VALID.replace("sqlite:///data/agency.db", "sqlite:///:memory:")
    assert load(tmp_path, text).parties["agency"].store == "sqlite:///:memory:"


def test_secrets(tmp_path: Path) -> None:
    text = VALID.replace(
        'port: "7000"}', 'auth: {user: u, password: "nested-pw"}, token: ""}'
    ).replace("s3cret-pw", "p%40ss")
    cfg = load(tmp_path, text, env={"CHAT_TOKEN": "tok-123456"})
    assert cfg.secrets() == {"tok-123456", "nested-pw", "p%40ss", "p@ss"}


def test_delivery_section(tmp_path: Path) -> None:
    text = VALID + "delivery: {max_attempts: 3, backoff_initial: 0.5, shutdown_grace: 0}\n"
    delivery = load(tmp_path, text).delivery
    assert delivery == DeliveryConfig(max_attempts=3, backoff_initial=0.5, shutdown_grace=0)
    assert delivery.backoff_max == 300.0


def test_sharing_one_room_is_fine(tmp_path: Path) -> None:
    text = VALID + "  other:\n    rooms:\n      - {connector: agency-chat, room: lobby}\n"
    text += "      - {connector: acme-slack, room: elsewhere}\n"
    assert set(load(tmp_path, text).pipes) == {"acme-project", "other"}


def test_yaml_merge_keys(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        parties:
          agency: {store: "sqlite:///a.db"}
        connectors:
          a: &base {party: agency, type: chat, listen: x, port: 1}
          b: {<<: *base, port: 2}
        pipes: {}
        """,
    )
    assert cfg.connectors["b"].options.port == 2  # type: ignore[attr-defined]
    assert cfg.connectors["b"].options.listen == "x"  # type: ignore[attr-defined]


def test_entry_point_types_are_used_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("type: slack", "type: slak"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"CHAT_TOKEN": "t"})
    installed = str(info.value).split("installed types: ")[1].split(")")[0].split(", ")
    assert {"api", "irc", "email"} <= set(installed)  # every connector shipped here


# --- errors ---


def test_issue_str() -> None:
    assert str(ConfigIssue("c.yaml", 3, "parties.a", "bad")) == "c.yaml:3: parties.a: bad"
    assert str(ConfigIssue("c.yaml", None, "", "bad")) == "c.yaml: bad"
    err = ConfigError([ConfigIssue("c.yaml", 1, "", "x"), ConfigIssue("c.yaml", 2, "p", "y")])
    assert str(err) == "c.yaml:1: x\nc.yaml:2: p: y"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml", env={})
    assert "nope.yaml: cannot read" in str(info.value)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    err = fail(tmp_path, "parties:\n  agency: {store: x\nconnectors: {}\n")
    [issue] = err.issues
    assert issue.file.endswith("roomlink.yaml")
    assert issue.line == 3
    assert issue.message.startswith("invalid YAML")


def test_empty_file(tmp_path: Path) -> None:
    err = fail(tmp_path, "# nothing\n")
    assert "empty" in str(err)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    err = fail(tmp_path, "- parties\n- pipes\n")
    [issue] = err.issues
    assert issue.line == 1
    assert "top level must be a mapping" in issue.message


def test_duplicate_key(tmp_path: Path) -> None:
    err = fail(tmp_path, HEAD + "  a: {party: agency, type: chat, listen: z}\npipes: {}\n")
    issue = only(err, "connectors.a")
    assert issue.line == 6
    assert issue.message == "duplicate key 'a' (first on line 4)"


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace('{store: "sqlite', '{strore: "sqlite'))
    issue = only(err, "parties.agency.strore")
    assert issue.line == 2
    assert issue.message == "unknown key 'strore'; did you mean 'store'?"
    assert only(err, "parties.agency.store").message == "missing required key 'store'"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID + "delivry: {}\n")
    issue = only(err, "delivry")
    assert issue.line == 13
    assert issue.message == "unknown key 'delivry'; did you mean 'delivery'?"


def test_unknown_option_key(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("token:", "tokn:"), env={"CHAT_TOKEN": "t"})
    issue = only(err, "connectors.agency-chat.tokn")
    assert issue.line == 5
    assert issue.message == "unknown key 'tokn'; did you mean 'token'?"
    err = fail(tmp_path, VALID.replace("party: acme,", "prty: acme,"))
    assert "unknown key 'prty'; did you mean 'party'?" in str(err)


def test_unknown_nested_option_key(tmp_path: Path) -> None:
    text = VALID.replace('port: "7000"}', "auth: {usr: u, password: p}}")
    err = fail(tmp_path, text, env={"CHAT_TOKEN": "t"})
    issue = only(err, "connectors.acme-slack.auth.usr")
    assert issue.line == 6
    assert issue.message == "unknown key 'usr'; did you mean 'user'?"


def test_missing_keys_point_at_parent(tmp_path: Path) -> None:
    err = fail(
        tmp_path,
        """
        parties:
          agency:
            store: "sqlite:///a.db"
          acme:
            note: x
        connectors:
          a: {party: agency, type: chat}
        """,
    )
    assert only(err, "parties.acme.store").line == 4
    assert only(err, "parties.acme.note").line == 5
    assert only(err, "connectors.a.listen").line == 7
    assert only(err, "connectors.a.listen").message == "missing required key 'listen'"
    issue = only(err, "pipes")
    assert (issue.line, issue.message) == (1, "missing required key 'pipes'")


def test_unknown_connector_type(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("type: slack", "type: slak"))
    issue = only(err, "connectors.acme-slack.type")
    assert issue.line == 6
    assert issue.message == (
        "unknown connector type 'slak'; did you mean 'slack'? (installed types: chat, slack)"
    )
    # the connector exists, so the pipe naming it is not an error too
    assert len(err.issues) == 1


def test_unknown_party(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("party: agency,", "party: agncy,"))
    issue = only(err, "connectors.agency-chat.party")
    assert issue.line == 5
    assert "unknown party 'agncy'; did you mean 'agency'?" in issue.message


def test_unknown_connector_in_pipe(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("{connector: acme-slack", "{connector: acme-slak"))
    issue = only(err, "pipes.acme-project.rooms[1].connector")
    assert issue.line == 12
    assert "unknown connector 'acme-slak'; did you mean 'acme-slack'?" in issue.message


def test_same_room_twice_in_a_pipe(tmp_path: Path) -> None:
    text = VALID + "      - {connector: agency-chat, room: lobby, direction: in}\n"
    err = fail(tmp_path, text)
    issue = only(err, "pipes.acme-project.rooms[2]")
    assert issue.line == 13
    assert issue.message == "room agency-chat:lobby is already in this pipe (rooms[0])"


def test_pipes_sharing_two_rooms(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        pipes:
          one:
            rooms: [{connector: a, room: r1}, {connector: b, room: r2}]
          two:
            rooms:
              - {connector: b, room: r2}
              - {connector: a, room: r1}
              - {connector: a, room: r3}
        """
    )
    err = fail(tmp_path, text)
    issue = only(err, "pipes.two")
    assert issue.line == 9
    assert (
        issue.message == "pipes one and two share rooms a:r1 and b:r2: a message would arrive twice"
    )


def test_unset_environment_variable(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID, env={})
    [issue] = err.issues  # no second complaint about the same value
    assert (issue.line, issue.path) == (5, "connectors.agency-chat.token")
    assert "CHAT_TOKEN is not set" in issue.message
    assert str(issue).startswith(f"{tmp_path / 'roomlink.yaml'}:5: connectors.agency-chat.token: ")


def test_malformed_variable_reference(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("${CHAT_TOKEN}", "${CHAT TOKEN}"))
    issue = only(err, "connectors.agency-chat.token")
    assert "malformed" in issue.message


def test_secrets_never_printed(tmp_path: Path) -> None:
    secret = "hunter2-very-secret"
    text = VALID.replace('port: "7000"', 'port: "${CHAT_TOKEN}", mode: "${CHAT_TOKEN}"')
    text = text.replace("room: lobby", 'room: "${EMPTY}"')
    text = text.replace("postgresql://bridge:s3cret-pw", f"mysql://bridge:{secret}")
    err = fail(tmp_path, text, env={"CHAT_TOKEN": secret, "EMPTY": ""})
    paths = {issue.path for issue in err.issues}
    assert paths == {
        "parties.acme.store",
        "connectors.acme-slack.port",
        "connectors.acme-slack.mode",
        "pipes.acme-project.rooms[0].room",
    }
    assert secret not in str(err)
    assert secret not in repr(err.issues)


def test_nick_format_placeholders(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("<{nick}@{party}> ", "<{nik}> "))
    issue = only(err, "pipes.acme-project.nick_format")
    assert issue.line == 9
    assert "unknown placeholder {nik}" in issue.message
    assert "did you mean 'nick'?" in issue.message
    for bad in ("{nick}}", "{nick", "nick}", "{}", "{nick.upper}", "{0}", "{nick!r}", "{nick:>9}"):
        err = fail(tmp_path, VALID.replace("<{nick}@{party}> ", bad))
        assert only(err, "pipes.acme-project.nick_format").line == 9


def test_room_values(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("room: lobby", 'room: ""'))
    issue = only(err, "pipes.acme-project.rooms[0].room")
    assert (issue.line, issue.message) == (11, "a room must not be empty")
    err = fail(tmp_path, VALID.replace("direction: out", "direction: outward"))
    issue = only(err, "pipes.acme-project.rooms[1].direction")
    assert issue.line == 12
    assert "'in', 'out' or 'inout'" in issue.message


def test_pipe_needs_two_rooms(tmp_path: Path) -> None:
    err = fail(tmp_path, HEAD + "pipes:\n  solo:\n    rooms: [{connector: a, room: r}]\n")
    issue = only(err, "pipes.solo.rooms")
    assert (issue.line, issue.message) == (8, "a pipe needs at least 2 rooms")


def test_bad_delivery(tmp_path: Path) -> None:
    text = VALID + "delivery:\n  max_attempts: 0\n  backoff_initial: 10\n  backoff_max: 5\n"
    err = fail(tmp_path, text)
    assert only(err, "delivery.max_attempts").line == 14
    issue = only(err, "delivery.backoff_max")
    assert (issue.line, issue.message) == (16, "backoff_max must not be less than backoff_initial")


def test_admin_section(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID + "admin:\n  listen: nowhere\n  lisen: x\n")
    assert "host:port" in only(err, "admin.listen").message
    assert "did you mean 'listen'" in only(err, "admin.lisen").message


def test_bad_store_url(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID.replace("sqlite:///data/agency.db", "sqlite://"))
    issue = only(err, "parties.agency.store")
    assert issue.line == 2
    assert "sqlite" in issue.message


def test_all_issues_collected_and_sorted(tmp_path: Path) -> None:
    text = (
        VALID.replace("{store:", "{stor:", 1)
        .replace("type: slack", "type: slak")
        .replace("direction: out", "direction: sideways")
    )
    err = fail(tmp_path, text, env={"CHAT_TOKEN": "t"})
    lines = [issue.line for issue in err.issues]
    assert lines == sorted(lines)
    assert {issue.path for issue in err.issues} >= {
        "parties.agency.stor",
        "connectors.acme-slack.type",
        "pipes.acme-project.rooms[1].direction",
    }


def test_async_delivery_marks_only_on_postgresql(tmp_path: Path) -> None:
    acme = '{store: "postgresql://bridge:s3cret-pw@db.example/acme"}'
    fast = '{store: "postgresql://bridge:s3cret-pw@db.example/acme", async_delivery_marks: true}'
    config = load(tmp_path, VALID.replace(acme, fast))
    assert config.parties["acme"].async_delivery_marks
    assert not config.parties["agency"].async_delivery_marks
    err = fail(tmp_path, VALID.replace('{store: "sqlite:///data/agency.db"}',
                                       '{store: "sqlite:///data/agency.db", '
                                       'async_delivery_marks: true}'))
    issue = only(err, "parties.agency.async_delivery_marks")
    assert "only" not in issue.message and "postgresql" in issue.message


def test_each_connector_gets_a_state_folder_beside_its_partys_store(tmp_path: Path) -> None:
    """Where a connector's own files (Matrix's encryption keys) live: beside a SQLite
    database, in the party's state_dir (relative to the config file), else beside the
    config file for a PostgreSQL party; never in the working directory."""
    config = load(tmp_path, VALID.replace(
        'acme: {store: "postgresql://bridge:s3cret-pw@db.example/acme"}',
        'acme: {store: "postgresql://bridge:s3cret-pw@db.example/acme"}\n'
        '  other: {store: "postgresql://db.example/other", state_dir: keep/here}'))
    assert config.state_dir("agency", "agency-chat") == (
        tmp_path / "data" / "agency.db.state" / "agency-chat")
    assert config.state_dir("acme", "acme-slack") == (
        tmp_path / "roomlink-state" / "acme" / "acme-slack")
    assert config.state_dir("other", "x") == tmp_path / "keep" / "here" / "x"
    err = fail(tmp_path, VALID.replace('"sqlite:///data/agency.db"}',
                                       '"sqlite:///data/agency.db", state_dir: " "}'))
    assert "state_dir must be a folder's path" in str(err)


# --- replicas ---

def test_cluster_is_off_unless_enabled(tmp_path: Path) -> None:
    assert load(tmp_path, VALID).cluster.enabled is False


def test_a_cluster_wants_every_store_on_postgresql(tmp_path: Path) -> None:
    err = fail(tmp_path, VALID + "cluster: {enabled: true, lease_seconds: 5}\n")
    issue = only(err, "parties.agency.store")
    assert "must be PostgreSQL" in issue.message and issue.line == 2
    assert not [i for i in err.issues if i.path == "parties.acme.store"]


def test_a_cluster_on_postgresql_and_its_lease(tmp_path: Path) -> None:
    text = VALID.replace('"sqlite:///data/agency.db"', '"postgresql://db/agency"')
    config = load(tmp_path, text + "cluster: {enabled: true, lease_seconds: 5}\n")
    assert config.cluster.enabled and config.cluster.lease_seconds == 5
    err = fail(tmp_path, text + "cluster: {enabled: true, lease_seconds: 1}\n")
    assert only(err, "cluster.lease_seconds")
