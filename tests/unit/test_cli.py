"""Stop signals and one-line errors, as every stage's command line gets them."""

import os
import signal

import mlflow
import pytest

from pipeline import cli, tracking
from pipeline.errors import PipelineError


def runs():
    return mlflow.search_runs(experiment_names=["exp"], output_format="list")


def test_sigterm_marks_the_run_killed_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with (
        pytest.raises(cli.StageTerminated),
        cli.stop_signals(),
        tracking.stage_run("train_sigmoid", "exp", {}),
    ):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
    (run,) = runs()
    assert run.info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is before


def test_deferred_stop_records_the_signal_and_raises_at_the_end():
    with (
        pytest.raises(cli.StageTerminated),
        cli.stop_signals(),
        tracking.stage_run("train_relu", "exp", {}),
        cli.deferred_stop() as stop,
    ):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set()  # no exception inside: native code may be running here
    (run,) = runs()
    assert run.info.status == "KILLED"


def test_run_cli_turns_errors_and_signals_into_one_line_and_an_exit_code(capsys):
    def refuses(argv):
        raise PipelineError("param 'x' is wrong; fix it")

    def stopped(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()

    assert cli.run_cli(refuses) == 1
    assert capsys.readouterr().err == "error: param 'x' is wrong; fix it\n"
    assert cli.run_cli(stopped) == 130
    assert capsys.readouterr().err.startswith("error: interrupted;")
    assert cli.run_cli(lambda argv: None) == 0
