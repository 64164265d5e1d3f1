"""Optional TensorBoard logging: `--tensorboard` writes each epoch's metrics as scalars
next to metrics.jsonl, without changing run ids; asking for it without the package is an
error that names the extra."""

import importlib.util
import json
import sys

import pytest
from conftest import needs

from wiringlab.cli import main
from wiringlab.experiment.errors import MissingExtraError

RECIPE = """
name: tb
base:
  data: {name: synthetic, options: {n_train: 128, n_test: 64, input_shape: [8], num_classes: 2}}
  model: {kind: mlp, hidden: [8]}
  train: {epochs: 3, batch_size: 32, progress: false}
seeds: [0]
"""

needs_tensorboard = needs("tensorboard", importlib.util.find_spec("tensorboard") is not None,
                          "tensorboard is not installed: pip install 'wiringlab[tensorboard]'")


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tb.yaml"
    path.write_text(RECIPE)
    return path


@needs_tensorboard
def test_tensorboard_scalars_match_metrics_jsonl(recipe, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["run", str(recipe), "--out", str(tmp_path / "plain")]) == 0
    assert main(["run", str(recipe), "--out", str(tmp_path / "board"), "--tensorboard"]) == 0
    (run,) = (tmp_path / "board" / "runs").iterdir()
    assert (tmp_path / "plain" / "runs" / run.name).is_dir()  # same run id with and without it
    assert not (tmp_path / "plain" / "runs" / run.name / "tensorboard").exists()  # off by default
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr"} <= set(events.Tags()["scalars"])
    for key in ("test_acc", "train_loss"):
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [1, 2, 3]
        assert [e.value for e in logged] == pytest.approx([r[key] for r in records], rel=1e-6)


MULTITASK_RECIPE = """
name: tbm
base:
  multitask:
    tasks:
      a: {data: {name: synthetic, options: {n_train: 64, n_test: 32, input_shape: [8], num_classes: 2}}}
      b: {data: {name: synthetic, options: {n_train: 64, n_test: 32, input_shape: [6], num_classes: 3}}}
    width: 8
  train: {epochs: 2, batch_size: 32, progress: false}
seeds: [0]
"""


@needs_tensorboard
def test_multitask_runs_log_to_tensorboard_too(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = tmp_path / "tbm.yaml"
    path.write_text(MULTITASK_RECIPE)
    assert main(["run", str(path), "--out", str(tmp_path / "board"), "--tensorboard"]) == 0
    (run,) = (tmp_path / "board" / "runs").iterdir()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]


def test_missing_tensorboard_is_a_clear_error(recipe, tmp_path, monkeypatch, capsys):
    from wiringlab.experiment.tensorboard import require_tensorboard

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'wiringlab\[tensorboard\]'"):
        require_tensorboard()
    assert main(["run", str(recipe), "--out", str(tmp_path / "o"), "--tensorboard"]) == 2
    assert "tensorboard" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything ran
