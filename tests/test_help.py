"""``--help`` reads by topic, says each default once and points only at commands that exist."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields

import pytest

from fcdd.cli import build_parser
from fcdd.commands import COMMANDS
from fcdd.commands.base import shown_default
from fcdd.config import GROUPS, Config

#: ``fcdd <command>`` as a help text mentions one
MENTION = re.compile(r"\bfcdd ([a-z][\w-]*)")


@pytest.fixture(scope="module")
def subparsers() -> dict[str, argparse.ArgumentParser]:
    return build_parser()._subparsers._group_actions[0].choices


def test_every_option_has_a_group_of_the_help():
    assert [f.name for f in fields(Config) if f.metadata.get("group") not in GROUPS] == []


def test_the_mention_pattern_finds_commands():
    assert MENTION.findall("see `fcdd datasets` and fcdd list; objective: fcdd / hsc") == ["datasets", "list"]


def test_help_mentions_only_commands_that_exist(subparsers):
    names = set(COMMANDS.names())
    texts = {"fcdd": build_parser().format_help()}
    for name, spec in COMMANDS.items():
        texts[name] = subparsers[name].format_help() + spec.help
    unknown = {name: sorted(set(MENTION.findall(text)) - names) for name, text in texts.items()}
    assert {name: found for name, found in unknown.items() if found} == {}


def test_list_has_a_section_for_every_kind_of_name(capsys, subparsers):
    subparsers["list"].parse_args([]).func(None)
    titles = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert titles == ["nets", "encoder-decoders", "datasets", "objectives", "noise modes", "supervision modes", "presets", "loggers", "executors"]


def test_train_help_has_the_groups_in_order(subparsers):
    parser = subparsers["train"]
    titles = [group.title for group in parser._action_groups]
    assert [t for t in titles if t in GROUPS] == list(GROUPS)
    for name in ("objective: fcdd / hsc", "objective: ae / attention-ae", "objective: patchcore"):
        assert f"\n{name}:\n" in parser.format_help()
    by_dest = {action.dest: group.title for group in parser._action_groups for action in group._group_actions}
    assert {f.name: by_dest[f.name] for f in fields(Config)} == {f.name: f.metadata["group"] for f in fields(Config)}


def test_train_help_says_each_default_once_and_readably(subparsers):
    parser = subparsers["train"]
    for action in parser._actions:
        assert (action.help or "").count("default:") <= 1, action.option_strings
    for f in fields(Config):  # a help text of its own says no default beside the shown one
        if shown_default(getattr(Config(), f.name)) is not None:
            assert "default:" not in f.metadata["help"] and "(default" not in f.metadata["help"], f.name
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    assert "(default: confetti,cutpaste_scar)" in text
    assert "--report, --no-report write plots, galleries and report.html after evaluation (default: on)" in text
    assert "(default: off)" in text and "(default: 224; range [16, 4096])" in text
    assert "[" + "'" not in text and "default: None" not in text and "default: []" not in text
    assert parser.format_usage().startswith("usage: fcdd train [-h] [--config YAML] [options]")
