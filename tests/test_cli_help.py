"""Every option and argument of every ``roomlink`` command says what it is for in --help."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from roomlink.cli.main import _parser


def commands(parser: argparse.ArgumentParser, path: str = "roomlink"
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, parser in commands(_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == [], "options without help text:\n" + "\n".join(missing)


def test_every_command_has_a_summary_and_a_description() -> None:
    for path, parser in commands(_parser()):
        assert parser.description, f"{path} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{path} {choice.dest} has no summary"
