"""Usage mistakes as one line with the closest match, not argparse's usage dump.

``lora-tui chekc judy`` used to open a project called "chekc" and complain about "unrecognized
arguments: judy"; ``check --stirct`` printed the whole usage block before the one useful line. A
typo deserves one line that says what was meant.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from lora_tui.core.errors import LoraTuiError


class UsageError(LoraTuiError):
    """A command line argparse cannot make sense of (exit 2, like argparse's own)."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most likely misspells, or None when nothing is close."""
    found = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return found[0] if found else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match else ""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (one line, with a suggestion)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            word, options = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
            message = f"{message.split(':')[0]}: unknown value '{word}'{_did_you_mean(word, options)}"
        raise UsageError(_where(self.prog) + message, hint=f"see {self.prog} --help")


def _where(prog: str) -> str:
    """``check: `` for the parser of ``lora-tui check`` (the CLI already prints ``lora-tui: error:``)."""
    name = prog.removeprefix("lora-tui").strip()
    return f"{name}: " if name else ""


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings]  # argparse has no public API for this


def unknown_arguments(parser: argparse.ArgumentParser, extras: Sequence[str]) -> UsageError:
    """The error for arguments a (sub)command does not take: the first one, with the closest option."""
    first = extras[0]
    if first.startswith("-"):
        flag = first.split("=", 1)[0]
        return UsageError(f"{_where(parser.prog)}unknown option '{flag}'"
                          f"{_did_you_mean(flag, option_strings(parser))}", hint=f"see {parser.prog} --help")
    return UsageError(f"{_where(parser.prog)}unexpected argument '{first}'", hint=f"see {parser.prog} --help")


def unknown_command(word: str, rest: Sequence[str], commands: Iterable[str],
                    prog: str = "lora-tui") -> UsageError | None:
    """``lora-tui WORD …`` where WORD is not a command: an error when WORD is not a project folder either.

    ``lora-tui PROJECT`` opens the app, so a word that names an existing path is left alone, and so is
    a lone word that resembles no command (``open`` then says the folder is missing).
    """
    if "/" in word or word.startswith(("~", ".")) or Path(word).expanduser().exists():
        return None  # a path, even a missing one: `open` names it
    match = closest(word, commands)
    if match is None and not any(not r.startswith("-") for r in rest):
        return None
    if match:
        return UsageError(f"unknown command '{word}'; did you mean '{match}'?", hint=f"see {prog} --help")
    return UsageError(f"unknown command '{word}', and no project folder of that name",
                      hint=f"commands: {', '.join(sorted(commands))}")


def unknown_long_option(parser: argparse.ArgumentParser, argv: Sequence[str]) -> UsageError | None:
    """The first ``--option`` the (sub)command does not take, found before argparse parses: argparse
    would first complain about a missing argument (``check --stirct``), hiding the typo."""
    nested = _subcommand(parser, argv)
    if nested is not None:  # `lora-tui lora inspect --json`: each level's options by its own parser
        before, child, rest = nested
        return unknown_long_option(parser, before) or unknown_long_option(child, rest)
    known = set(option_strings(parser))
    for token in argv:
        if token == "--":
            break
        if token.startswith("--") and token.split("=", 1)[0] not in known:
            return unknown_arguments(parser, [token])
    return None


def _subcommand(parser: argparse.ArgumentParser,
                argv: Sequence[str]) -> tuple[Sequence[str], argparse.ArgumentParser, Sequence[str]] | None:
    """(the tokens before it, its parser, the tokens after it) for a sub-subcommand in ``argv``."""
    for action in parser._actions:  # argparse has no public API for its subparsers either
        if isinstance(action, argparse._SubParsersAction):
            for i, token in enumerate(argv):
                if token == "--":
                    return None
                if token in action.choices:
                    return argv[:i], action.choices[token], argv[i + 1:]
    return None
