"""The ``semantic-jpeg`` command line as a whole: every option of every subcommand explains itself."""
import argparse

import pytest

from semantic_jpeg.cli import build_parser


def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


PARSERS = dict(_parsers(build_parser()))


@pytest.mark.parametrize("path", [p for p in PARSERS if p], ids=" ".join)
def test_every_option_has_help_that_states_its_default(path):
    parser = PARSERS[path]
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[-1]
        assert action.help and action.help.strip(), f"semantic-jpeg {' '.join(path)} {name}: no help text"
        if action.default is not None and action.default is not False:
            shown = parser._get_formatter()._get_help_string(action)
            assert "default" in shown, f"semantic-jpeg {' '.join(path)} {name}: default {action.default!r} not shown"
    assert "(default: None)" not in text and "(default: False)" not in text


def test_help_shows_the_real_default_value():
    text = " ".join(PARSERS[("evaluate",)].format_help().split())
    assert "--draws DRAWS draws of stochastic defenses for Ens-k (default: 10)" in text
    assert "images for the ablations (0: skip) (default: 20)" in text
    assert "against the L-inf budget (0: skip) (default: 0)" in text  # 0 == False, yet 0 is a default to show
