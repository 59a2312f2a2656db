"""Progress bars only where someone watches, one log line per epoch everywhere, and a library
that logs like one: no console handler of its own, records propagating to the host's handlers."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fcdd
from fcdd import runtime
from fcdd.cli import build_parser, main
from fcdd.commands.base import COMMANDS, command
from fcdd.runtime import console_logging, progress_bar, progress_setting, show_progress

#: the per-epoch line: epoch k/N, loss, nominal and anomalous loss, throughput, learning rate
EPOCH_LINE = re.compile(
    r"^epoch (\d+)/(\d+): loss (\S+) \(nominal (\S+), anomalous (\S+)\), (\S+) img/s, lr (\S+)$", re.MULTILINE
)


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def use_stderr(monkeypatch, stream: io.StringIO) -> io.StringIO:
    """``stream`` as stderr for the rest of the test (set inside the test: pytest's capturing puts
    its own stream back between a fixture's setup and the test)."""
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


@pytest.fixture(autouse=True)
def no_tqdm_disable(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


def test_bars_draw_on_a_terminal_only(monkeypatch):
    use_stderr(monkeypatch, Terminal())
    assert show_progress()
    use_stderr(monkeypatch, io.StringIO())
    assert not show_progress()


def test_tqdm_disable_silences_every_bar_even_one_its_caller_enables(monkeypatch):
    use_stderr(monkeypatch, Terminal())
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not show_progress()
    assert progress_bar(range(3), disable=False).disable  # evaluate() passes disable=not progress
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert show_progress()


def test_the_setting_wins_over_the_stream_and_the_callers_disable_wins_over_both(monkeypatch):
    use_stderr(monkeypatch, Terminal())
    with progress_setting(False):
        assert not show_progress()
    use_stderr(monkeypatch, io.StringIO())
    with progress_setting(True):
        assert show_progress()
        assert progress_bar(range(3), disable=True).disable
    assert not show_progress()


def test_a_forced_bar_writes_frames_and_an_auto_bar_into_a_file_writes_nothing(monkeypatch):
    log_file = use_stderr(monkeypatch, io.StringIO())
    with progress_setting(True):
        list(progress_bar(range(3), desc="forced", mininterval=0))
    assert "\r" in log_file.getvalue()
    log_file.seek(0)
    log_file.truncate()
    list(progress_bar(range(3), desc="auto", mininterval=0))
    assert log_file.getvalue() == ""


def test_every_command_has_the_progress_flags():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command_parser in sub.choices.items():
        flags = command_parser._option_string_actions
        assert "--progress" in flags and "--no-progress" in flags, name


@pytest.mark.parametrize(("flags", "expected"), [([], False), (["--progress"], True), (["--no-progress"], False)])
def test_the_flag_holds_for_the_commands_whole_run(flags, expected, monkeypatch):
    use_stderr(monkeypatch, io.StringIO())
    seen = []

    @command("probe-progress", "test only")
    def probe(args) -> None:
        seen.append(show_progress())

    try:
        assert main(["probe-progress", *flags]) == 0
    finally:
        COMMANDS.unregister("probe-progress")
    assert seen == [expected]  # stderr is a file here: auto means no bars


def test_console_lines_are_plain_and_warnings_say_so(monkeypatch):
    log_file = use_stderr(monkeypatch, io.StringIO())
    log = logging.getLogger("fcdd.test")
    with console_logging():
        log.info("an info line")
        log.warning("a warning")
        log.debug("not shown")
    log.info("after the block: not shown by this handler")
    assert log_file.getvalue().splitlines() == ["an info line", "warning: a warning"]


@pytest.fixture(scope="module")
def cli_log(synthetic_root, tmp_path_factory) -> tuple[str, Path]:
    """``fcdd train ... 2>log``: a tiny run on the command line, stderr into a file."""
    out = tmp_path_factory.mktemp("cli") / "run"
    log = out.parent / "stderr.log"
    args = ["--dataset", "mvtec", "--data", str(synthetic_root), "--image-size", "32", "--net", "cnn32", "--width", "0.25",
            "--pretrained", "none", "--epochs", "2", "--batch-size", "8", "--eval-batch-size", "16", "--holdout", "0.2",
            "--device", "cpu", "--no-report", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    with open(log, "wb") as stderr:
        done = subprocess.run([sys.executable, "-m", "fcdd", "train", *args], stdout=subprocess.DEVNULL, stderr=stderr,
                              env=env, timeout=300, check=False)
    text = log.read_text()
    assert done.returncode == 0, text
    return text, out


def test_a_log_file_gets_no_bar_frames_and_one_line_per_epoch(cli_log):
    text, out = cli_log
    assert "\r" not in text and "\x1b" not in text
    epochs = EPOCH_LINE.findall(text)
    assert [(e[0], e[1]) for e in epochs] == [("1", "2"), ("2", "2")]
    for _, _, loss, nominal, anomalous, throughput, lr in epochs:
        assert float(loss) > 0 and float(nominal) >= 0 and float(anomalous) >= 0 and float(throughput) > 0
        assert float(lr) == pytest.approx(1e-3)
    assert len(EPOCH_LINE.findall(text)) == len([line for line in text.splitlines() if line.startswith("epoch ")])
    assert "image AUROC" in text


def test_the_run_folders_log_keeps_the_epoch_lines(cli_log):
    _, out = cli_log
    logged = (out / "log.txt").read_text()
    assert "INFO epoch 1/2: loss" in logged and "INFO epoch 2/2: loss" in logged


class Collect(logging.Handler):
    """A host application's handler on the root logger; notes what fcdd's logger holds meanwhile."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.fcdd_handlers: set[type] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.fcdd_handlers.update(type(h) for h in logging.getLogger("fcdd").handlers)


def test_the_python_api_logs_to_the_hosts_handlers_and_adds_no_console_handler(tiny_config):
    root, host = logging.getLogger(), Collect()
    before = root.level
    root.addHandler(host)
    root.setLevel(logging.INFO)
    try:
        fcdd.train(tiny_config)
    finally:
        root.removeHandler(host)
        root.setLevel(before)
    messages = [r.getMessage() for r in host.records if r.name.startswith("fcdd")]
    assert any(m.startswith("epoch 1/2: loss") for m in messages) and any(m.startswith("epoch 2/2: loss") for m in messages)
    assert host.fcdd_handlers == {logging.FileHandler}, "only the run folder's log.txt"
    fcdd_logger = logging.getLogger("fcdd")
    assert fcdd_logger.propagate and not fcdd_logger.handlers
    assert "epoch 2/2: loss" in (Path(tiny_config.out) / "log.txt").read_text()


def test_a_level_set_by_the_host_is_kept(tmp_path):
    logger = logging.getLogger("fcdd")
    logger.setLevel(logging.WARNING)
    try:
        with runtime.run_logging(tmp_path):
            logging.getLogger("fcdd").info("quiet")
            assert logger.level == logging.WARNING
    finally:
        logger.setLevel(logging.NOTSET)
    assert "quiet" not in (tmp_path / "log.txt").read_text()
