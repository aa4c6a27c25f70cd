"""The command line explains itself: every command, option and positional has help text."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from mfgvision.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subcommand parser below it, each with its full command name."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


PARSERS = dict(_parsers(build_parser(), "mfgvision"))


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            missing += [
                f"subcommand {choice.dest}"
                for choice in action._choices_actions
                if not (choice.help or "").strip()
            ]
            missing += [
                f"subcommand {name}"
                for name in action.choices
                if name not in {choice.dest for choice in action._choices_actions}
            ]
        elif not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append("/".join(action.option_strings) or action.dest)
    return missing


def test_the_walk_reaches_every_command() -> None:
    assert {"mfgvision demo", "mfgvision cis", "mfgvision eval", "mfgvision edgehub call"} <= set(
        PARSERS
    )


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_argument_has_help(name: str) -> None:
    assert _undocumented(PARSERS[name]) == []


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_renders_and_shows_every_option(name: str) -> None:
    parser = PARSERS[name]
    text = parser.format_help()
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text


def test_a_bare_argument_is_found() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documented", help="says what it does")
    parser.add_argument("--bare")
    parser.add_argument("hidden", help=argparse.SUPPRESS)
    commands = parser.add_subparsers()
    commands.add_parser("quiet")
    assert _undocumented(parser) == ["--bare", "hidden", "subcommand quiet"]
