"""Ctrl-C and a closed pipe end a command with one line, not a traceback per process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.parametrize("interruptible, code", [(True, 130), (False, 0)])
def test_a_pool_worker_leaves_quietly_on_ctrl_c_unless_the_sweep_ignores_it(interruptible, code):
    script = ("import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # as a worker starts
              "from wiringlab.experiment.executors import _pool_init\n"
              f"_pool_init({interruptible}); os.kill(os.getpid(), signal.SIGINT); time.sleep(0.5)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (code, "")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _sweep_interrupted_as_workers_start(tmp_path, ignore_sigint: bool):
    """A two-worker sweep, sent SIGINT (to every process of its group, as Ctrl-C in a terminal
    does) while its workers still import torch. Returns (exit code, stderr, worker pids)."""
    (tmp_path / "r.yaml").write_text(RECIPE.replace("seeds: [0, 1, 2]", "grid: {train.epochs: [1, 2]}\nseeds: [0, 1]"))
    code = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if ignore_sigint else "") + (
        f"from wiringlab.cli import main; raise SystemExit(main(['run', {str(tmp_path / 'r.yaml')!r}, "
        f"'--out', {str(tmp_path / 'out')!r}, '--workers', '2', '--no-stack']))")
    sweep = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while len(workers := _children(sweep.pid)) < 2 and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.01)
    assert len(workers) >= 2, "the pool did not start"
    time.sleep(0.2)  # the workers are importing torch now (seconds)
    os.killpg(sweep.pid, signal.SIGINT)
    _, err = sweep.communicate(timeout=300)
    return sweep.returncode, err, workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
def test_ctrl_c_while_pool_workers_start_ends_with_one_line_and_no_worker_left(tmp_path):
    """The workers start with SIGINT ignored and the parent stops them: no traceback from
    any of them, none left running."""
    code, err, workers = _sweep_interrupted_as_workers_start(tmp_path, ignore_sigint=False)
    assert code == 130
    assert err.strip().splitlines()[-1].startswith("interrupted (finished runs are kept") and "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
def test_a_sweep_started_with_sigint_ignored_ignores_it_in_its_workers_too(tmp_path):
    code, err, _ = _sweep_interrupted_as_workers_start(tmp_path, ignore_sigint=True)
    assert code == 0 and "Traceback" not in err
    assert len(list((tmp_path / "out" / "runs").glob("*/summary.json"))) == 4  # every run finished
