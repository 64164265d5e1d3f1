"""Ctrl-C and a closed pipe end a command with one line, not a traceback per process."""

import subprocess
import sys

import pytest

import wiringlab.experiment
from wiringlab.cli import main

RECIPE = """
name: t
base: {data: {name: synthetic, options: {n_train: 64, n_test: 32, input_shape: [4]}}, train: {epochs: 1}}
seeds: [0, 1, 2]
"""


def test_ctrl_c_during_a_sweep_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(wiringlab.experiment, "run_sweep", interrupted)
    (tmp_path / "r.yaml").write_text(RECIPE)
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err.strip() == ("interrupted (finished runs are kept: run the same command again "
                                               "to resume)")


def test_a_reader_that_leaves_early_ends_the_dry_run_quietly(tmp_path, monkeypatch):
    (tmp_path / "r.yaml").write_text(RECIPE)
    sink = open(tmp_path / "sink", "w")

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return sink.fileno()

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"), "--dry-run"]) == 141


@pytest.mark.parametrize("inherited, code", [("SIG_DFL", 130), ("SIG_IGN", 0)])
def test_a_pool_worker_leaves_quietly_on_ctrl_c_unless_the_sweep_ignores_it(inherited, code):
    script = (f"import os, signal, time; signal.signal(signal.SIGINT, signal.{inherited})\n"
              "from wiringlab.experiment.executors import _pool_init\n"
              "_pool_init(); os.kill(os.getpid(), signal.SIGINT); time.sleep(0.5)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (code, "")
