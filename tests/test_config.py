from __future__ import annotations

import pytest

from fcdd.cli import build_parser, config_from_args
from fcdd.config import Config


def test_yaml_round_trip(tmp_path):
    config = Config(data="x", epochs=3, milestones=[1, 2], gauss_std=4.5, oe_limit=None)
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert Config.from_yaml(path) == config


def test_unknown_option_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nepoks: 4\n")
    with pytest.raises(ValueError, match="unknown option.*epoks"):
        Config.from_yaml(path)


def test_bad_value_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: many\n")
    with pytest.raises(ValueError, match="epochs: cannot read 'many' as int"):
        Config.from_yaml(path)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Config(optimizer="lbfgs")


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nlr: 0.01\nnet: cnn28\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--lr", "0.5", "--milestones", "3,4", "--no-report"])
    config = config_from_args(args)
    assert (config.epochs, config.lr, config.net, config.milestones, config.report) == (7, 0.5, "cnn28", [3, 4], False)
    assert config.batch_size == Config().batch_size


def test_every_command_prints_its_help(capsys):
    """Help texts go through argparse's %-formatting: a stray % in an option's help breaks --help."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0, name
        assert "usage: fcdd " + name in capsys.readouterr().out
    assert "top 1 %" in commands["train"].format_help()
