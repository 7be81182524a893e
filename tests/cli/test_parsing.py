"""The CLI grammar: key=value and --key value mean the same, unset options stay unset."""

from __future__ import annotations

import argparse

import pytest

from visionkit.cli._parsing import (
    OneLineParser,
    Option,
    add_options,
    given,
    parse_amp,
    parse_bool,
    to_flags,
)


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="visionkit test")
    add_options(
        parser, [Option("epochs", "", int), Option("name", ""), Option("fast", "", parse_bool)]
    )
    return parser


def test_key_value_and_flags_parse_the_same():
    parser = _parser()
    a = parser.parse_args(to_flags(["epochs=3", "name=run=1", "fast=yes"]))
    b = parser.parse_args(to_flags(["--epochs", "3", "--name", "run=1", "--fast", "true"]))
    assert given(a) == given(b) == {"epochs": 3, "name": "run=1", "fast": True}


def test_options_left_out_are_absent_so_library_defaults_apply():
    assert given(_parser().parse_args(to_flags(["epochs=2"]))) == {"epochs": 2}


def test_paths_and_negative_numbers_are_not_rewritten():
    assert to_flags(["a/b=c", "-1", "--x=3"]) == ["a/b=c", "-1", "--x=3"]


def test_usage_error_is_one_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(to_flags(["epochs=three"]))
    assert stop.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["maybe", "2", ""])
def test_parse_bool_refuses_other_words(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bool(text)


def test_parse_amp_takes_bf16_and_the_bool_words():
    assert [parse_amp(t) for t in ("BF16", "true", "off")] == ["bf16", True, False]
    with pytest.raises(argparse.ArgumentTypeError, match="true, false or bf16"):
        parse_amp("fp16")
