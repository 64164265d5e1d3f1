"""The Ray executor against real clusters: one started in this process with
`ray.init(num_cpus=2)`, and a head node started with `ray start --head` on loopback
and joined by address, as a user would point `--address` at an existing cluster.

The quickstart recipe (1 epoch, seed 0) through Ray gives the same final metrics per run
id as the in-process executor; resume skips finished runs; a task that raises or whose
worker dies is retried once, and so is a run of a stack that ends "failed"; then they
are recorded as failed while the sweep goes on.

The head node is stopped by signalling the process group this test started (not with
`ray stop`, which would kill every Ray process of the machine, including other test
sessions' clusters).
"""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import needs
import torch

from wiringlab.cli import main
from wiringlab.experiment import expand, load_recipe, run_sweep
from wiringlab.experiment.errors import ConfigError, MissingExtraError
from wiringlab.experiment.executors import InProcessExecutor, RayExecutor, make_executor, run_group_json

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
SHORT = [("train.epochs", 1), ("train.progress", False)]
SHORT_ARGS = ["--epochs", "1", "--seeds", "0", "--set", "train.progress=false"]

needs_ray = needs("ray", importlib.util.find_spec("ray") is not None,
                  "Ray is not installed: pip install 'wiringlab[ray]'")


def _quickstart(seeds=(0,)):
    recipe = load_recipe(QUICKSTART)
    return recipe, expand(recipe, str(QUICKSTART), SHORT, list(seeds))


def _summaries(out: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The shortened quickstart in this process with one thread, as each Ray task runs."""
    recipe, specs = _quickstart()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_sweep(recipe, specs, tmp_path_factory.mktemp("inprocess"), executor=InProcessExecutor())
    finally:
        torch.set_num_threads(threads)
    return {s["run_id"]: s for s in result.summaries}


def _assert_same_metrics(out: Path, reference: dict) -> None:
    summaries = _summaries(out)
    assert summaries.keys() == reference.keys()
    for run_id, summary in summaries.items():
        assert summary["status"] == "completed" and summary["attempts"] == 1
        assert summary["final"] == reference[run_id]["final"], run_id


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'wiringlab\[ray\]'"):
        make_executor("ray")
    with pytest.raises(ValueError, match="--executor ray"):
        make_executor("inprocess", address="127.0.0.1:6379")


@needs_ray
def test_an_address_where_no_head_answers_is_one_error_before_anything_runs(tmp_path, capsys):
    """`ray.init` retries an unreachable head for minutes; the command says so at once."""
    from wiringlab.experiment.executors import check_ray_address

    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConfigError, match=f"no Ray head answers at 127.0.0.1:{port}"):
            check_ray_address(address, timeout_s=2)
    check_ray_address("auto"), check_ray_address(None)  # Ray's to resolve: nothing to check
    with socket.socket() as head:  # something listens: accepted
        head.bind(("127.0.0.1", 0))
        head.listen()
        check_ray_address(f"127.0.0.1:{head.getsockname()[1]}", timeout_s=2)
    out = tmp_path / "o"
    address = f"127.0.0.1:{port}"
    assert main(["run", str(QUICKSTART), "--out", str(out), *SHORT_ARGS,
                 "--executor", "ray", "--address", address]) == 2
    assert "ray start --head" in capsys.readouterr().err
    assert not (out / "recipe.json").exists()


@pytest.mark.parametrize("cluster_gpus,device,expected", [(0, "auto", 0), (1, "auto", 0.25), (1, "cpu", 0),
                                                         (8, "cuda", 0.25)])
def test_tasks_ask_for_one_cpu_and_a_gpu_share_when_there_are_gpus(cluster_gpus, device, expected):
    _, (spec, *_) = _quickstart()
    spec = _with_device(spec, device)
    options = RayExecutor().task_options([spec], cluster_gpus)
    assert options["num_cpus"] == 1 and options["num_gpus"] == expected
    assert options["max_retries"] == 0  # the driver retries, and counts the attempts


def _with_device(spec, device):
    return type(spec)(spec.run_id, spec.label, spec.seed,
                      spec.config.model_copy(update={"train": spec.config.train.model_copy(update={"device": device})}),
                      spec.axes)


def test_a_gpu_index_is_refused_before_anything_runs(tmp_path):
    """Ray shows each task one GPU, as cuda (cuda:0): `cuda:1` would fail in every task."""
    from wiringlab.experiment import ConfigError

    _, specs = _quickstart()
    groups = [[_with_device(specs[0], "cuda")], [_with_device(specs[1], "cuda:1")]]
    with pytest.raises(ConfigError, match=r"train.device=cuda:1, but under --executor ray.*cuda or auto"):
        next(RayExecutor().map(groups, tmp_path))  # before connecting: no cluster is started
    RayExecutor.check(groups[:1])  # cuda: Ray's choice of GPU


def test_an_invisible_gpu_index_names_the_visible_ones(monkeypatch):
    from wiringlab.experiment.execute import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(RuntimeError, match=r"'cuda:2' requested but 2 GPU\(s\) are visible \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


@needs_ray
class TestLocalCluster:
    @pytest.fixture(scope="class", autouse=True)
    def cluster(self):
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()

    def test_quickstart_through_ray_matches_inprocess(self, reference, tmp_path):
        out = tmp_path / "ray"
        assert main(["run", str(QUICKSTART), "--out", str(out), *SHORT_ARGS, "--executor", "ray"]) == 0
        _assert_same_metrics(out, reference)
        assert (out / "report.html").is_file()

    def test_resume_skips_finished_runs(self, tmp_path):
        recipe, specs = _quickstart()
        out = tmp_path / "out"
        first = run_sweep(recipe, specs[:1], out, executor=RayExecutor())  # an "interrupted" sweep
        summary_path = out / "runs" / specs[0].run_id / "summary.json"
        mtime = summary_path.stat().st_mtime_ns
        second = run_sweep(recipe, specs, out, executor=RayExecutor())
        assert first.executed == [specs[0].run_id]
        assert second.skipped == [specs[0].run_id] and second.executed == [s.run_id for s in specs[1:]]
        assert summary_path.stat().st_mtime_ns == mtime
        third = run_sweep(recipe, specs, out, executor=RayExecutor())
        assert third.executed == [] and len(third.skipped) == len(specs)

    def test_failing_tasks_are_retried_once_then_recorded(self, tmp_path):
        recipe = load_recipe(QUICKSTART)
        recipe.zip["train.batch_size"] = [96, 112, 128]  # configs that cannot share a stack
        recipe.baseline = None  # its label no longer names a config: the first is the baseline
        specs = expand(recipe, str(QUICKSTART), SHORT, [0, 1])  # 3 configs x 2 seeds: 3 stacks of 2 runs
        crash, transient, partial = dict.fromkeys(s.label for s in specs)
        attempts_dir = str(tmp_path / "attempts")
        os.makedirs(attempts_dir)

        def task(group_json, out_dir, num_threads):  # defined here, so Ray pickles it by value
            for spec_json in group_json:
                with open(os.path.join(attempts_dir, spec_json["run_id"]), "a") as f:
                    f.write(".")
            with open(os.path.join(attempts_dir, group_json[0]["run_id"])) as f:
                attempt = len(f.read())
            label = group_json[0]["label"]
            if label == crash:
                os._exit(1)  # the worker process dies, every time
            if label == transient and attempt == 1:
                raise RuntimeError("injected transient failure")
            summaries = run_group_json(group_json, out_dir, num_threads)
            if label == partial and attempt == 1:  # one run of the stack ends "failed"
                summaries[-1] = {**summaries[-1], "status": "failed", "error": "injected failed run"}
            return summaries

        result = run_sweep(recipe, specs, tmp_path / "out", executor=RayExecutor(task=task))
        by_id = {s["run_id"]: s for s in result.summaries}
        attempts = {p.name: len(p.read_text()) for p in Path(attempts_dir).iterdir()}
        expected = {s.run_id: 1 if (s.label == partial and s.seed == 0) else 2 for s in specs}
        assert attempts == expected  # exactly one retry, and only of what failed
        for spec in specs:
            summary = by_id[spec.run_id]
            assert summary["attempts"] == expected[spec.run_id], spec.run_id
            if spec.label == crash:
                assert summary["status"] == "failed"
                assert "Worker" in summary["error"] or "died" in summary["error"], summary["error"]
                assert summary["traceback"]  # Ray's full account of the failure is kept
            else:
                assert summary["status"] == "completed" and summary["final"]["test_acc"] > 0.1  # chance: 0.1
        # the failures are on disk, and a resumed sweep runs only those runs again
        rerun = run_sweep(recipe, specs, tmp_path / "out", executor=RayExecutor())
        assert sorted(rerun.executed) == sorted(s.run_id for s in specs if s.label == crash)
        assert {s["status"] for s in rerun.summaries} == {"completed"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_node():
    """`ray start --head` on loopback (its own ports, temp dir and process group)."""
    if shutil.which("ray") is None:
        pytest.skip("the `ray` command is not on PATH")
    port, temp_dir = _free_port(), tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths are limited
    log_path = Path(temp_dir) / "head.log"
    command = ["ray", "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
               "--include-dashboard=false", "--disable-usage-stats", "--block", f"--temp-dir={temp_dir}",
               f"--ray-client-server-port={_free_port()}", f"--dashboard-port={_free_port()}",
               f"--dashboard-agent-listen-port={_free_port()}"]
    with open(log_path, "w") as log:
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_process_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_process_group(process: subprocess.Popen, grace_s: float = 1.5) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)  # anything of the group left?
            except ProcessLookupError:
                return
            time.sleep(0.1)


@needs_ray
def test_head_node_joined_by_address(head_node, reference, tmp_path):
    import ray

    assert not ray.is_initialized()
    out = tmp_path / "ray-head"
    code = main(["run", str(QUICKSTART), "--out", str(out), *SHORT_ARGS, "--executor", "ray",
                 "--address", head_node])
    assert code == 0
    assert not ray.is_initialized()  # the executor disconnected what it connected
    _assert_same_metrics(out, reference)


def test_an_interrupted_ray_sweep_cancels_the_tasks_it_sent(monkeypatch, tmp_path):
    """Ctrl-C while waiting: every task not yet collected is cancelled (force), so none goes on
    writing runs after the sweep's lock is released. A fake `ray` module records the calls."""
    from types import SimpleNamespace

    from wiringlab.experiment import ray_executor

    cancelled, refs = [], iter(range(100))

    class Remote:
        def options(self, **kw):
            return self

        def remote(self, *args):
            return next(refs)

    def interrupted_wait(pending, num_returns):
        raise KeyboardInterrupt

    fake = SimpleNamespace(is_initialized=lambda: True, remote=lambda f: Remote(), cluster_resources=lambda: {},
                           wait=interrupted_wait, cancel=lambda ref, force: cancelled.append((ref, force)))
    monkeypatch.setattr(ray_executor, "import_ray", lambda: fake)
    recipe = load_recipe(QUICKSTART)
    groups = [[s] for s in expand(recipe, str(QUICKSTART), seeds=[0])]
    with pytest.raises(KeyboardInterrupt):
        list(RayExecutor("auto").map(groups, tmp_path))
    assert cancelled == [(i, True) for i in range(len(groups))]


@pytest.mark.parametrize("lines_here, set_aside", [(1, True), (3, False)])
def test_metrics_of_a_failed_attempt_on_this_node_are_set_aside(tmp_path, lines_here, set_aside):
    """Attempt 1 died here after one epoch, the retry finished 3 epochs on another node (no
    shared filesystem): the leftover file would fail every report. A complete file is the
    retry's own on a shared filesystem and stays."""
    from wiringlab.experiment.store import RunFolder

    _, specs = _quickstart()
    spec = specs[0]
    folder = RunFolder(tmp_path / "runs" / spec.run_id)
    folder.start({"seed": 0})
    for epoch in range(1, lines_here + 1):
        folder.append_metrics({"epoch": epoch, "test_acc": 0.5})
    summary = {"run_id": spec.run_id, "label": spec.label, "seed": 0, "status": "completed", "epochs": 3,
               "provenance": {"hostname": "another-node"}}
    RayExecutor._record(spec, tmp_path, summary, 2, 1.0)
    assert folder.metrics_path.exists() is not set_aside
    assert (folder.path / "metrics.failed-attempt.jsonl").exists() is set_aside
    assert folder.read_summary()["attempts"] == 2
