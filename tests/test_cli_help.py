"""Every ``--help`` shows an example; ``--family`` is a checked choice."""

from __future__ import annotations

import argparse

import pytest

from escale.cli.main import build_parser, main

SKIP: set[str] = set()


def parsers(parser: argparse.ArgumentParser, prog: str = "escale") -> list[tuple[str, argparse.ArgumentParser]]:
    """``(command, parser)`` for every subcommand, nested ones included."""
    found = []
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{prog} {name}", sub), *parsers(sub, f"{prog} {name}")]
    return found


ALL = [("escale", build_parser()), *parsers(build_parser())]


def test_every_command_is_listed() -> None:
    names = {name for name, _ in ALL}
    assert {"escale propose", "escale lut build", "escale plot family", "escale study list", "escale paths",
            "escale train"} <= names and len(names) >= 20


@pytest.mark.parametrize("name, parser", [(n, p) for n, p in ALL if n not in SKIP], ids=lambda v: str(v))
def test_help_shows_an_example_that_runs_that_command(name: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert "Example:\n" in text, name
    example = text.split("Example:\n", 1)[1].strip().splitlines()[0].strip()
    words = example.split()
    first = next(i for i, w in enumerate(words) if w == "escale")  # `ESCALE_HOME=... escale paths` is allowed
    assert " ".join(words[first:]).startswith(name), (name, example)


def test_help_through_main_exits_0_with_the_example(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main(["lut", "build", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "Example:\n  escale lut build --space spaces/eseg-lite.yaml" in out
    assert "<home>/lut-local/" in out


@pytest.mark.parametrize("argv", [["plot", "family"], ["plot", "paper", "--figure", "1"], ["plot", "breakdown"],
                                  ["report"]])
def test_family_is_a_checked_choice_explained_in_help(argv: list[str], capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--family", "eseg-xl"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice: 'eseg-xl'" in err
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "eseg = all six Table-3 models" in out and "eseg-lite = ESeg-Lite-S/M/L" in out
    assert "eseg-full = ESeg-S/M/L only" in out
