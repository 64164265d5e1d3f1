"""Weight snapshots: what is written at which epoch, round trip, layer choice, errors."""

import pytest
import torch
from safetensors import safe_open

from helpers import blob_data
from wiringlab.engine import train
from wiringlab.engine.snapshots import SnapshotCallback, read_snapshots, snapshot_layers, snapshot_path
from wiringlab.experiment.config import MLPConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.layers import effective_weight
from wiringlab.models import build_model, linear_layers
from wiringlab.seeding import make_generator

CFG = TrainConfig(epochs=3, batch_size=64, progress=False, optimizer={"name": "sgd", "lr": 0.1})


def _model():
    return init_parameters_(build_model(MLPConfig(hidden=[12, 8]), (20,), 4), make_generator(0, "init"))


def test_snapshots_round_trip_init_and_every_epoch(tmp_path):
    model, data = _model(), blob_data(n_train=256, n_test=64)
    at_init = [effective_weight(m).detach().clone() for m in linear_layers(model)]
    train(model, data, CFG, seed=0, callbacks=[SnapshotCallback()], run_dir=tmp_path)
    snapshots = read_snapshots(tmp_path / "snapshots")
    assert [epoch for epoch, _ in snapshots] == [0, 1, 2, 3]
    assert all(set(tensors) == {"linear0", "linear1"} for _, tensors in snapshots)  # hidden only
    assert torch.equal(snapshots[0][1]["linear0"], at_init[0])
    assert torch.equal(snapshots[-1][1]["linear1"], effective_weight(linear_layers(model)[1]).detach())
    assert not torch.equal(snapshots[1][1]["linear0"], snapshots[0][1]["linear0"])  # training moved it
    with safe_open(str(snapshot_path(tmp_path / "snapshots", 3)), "pt") as f:
        assert f.metadata()["epoch"] == "3" and int(f.metadata()["step"]) == 3 * 4


def test_chosen_epochs_and_layers_only(tmp_path):
    callback = SnapshotCallback(layers=[2], epochs=[0, 2, 99], directory=tmp_path / "s")
    train(_model(), blob_data(n_train=128, n_test=32), CFG, seed=0, callbacks=[callback])
    snapshots = read_snapshots(tmp_path / "s")
    assert [epoch for epoch, _ in snapshots] == [0, 2]
    assert set(snapshots[0][1]) == {"linear2"} and snapshots[0][1]["linear2"].shape == (4, 8)


def test_layer_choice_and_errors(tmp_path):
    model = _model()
    assert snapshot_layers(model, "all") == [0, 1, 2] and snapshot_layers(model, "hidden") == [0, 1]
    with pytest.raises(ValueError, match=r"\[3\] out of range.*2: \(4, 8\)"):
        snapshot_layers(model, [3])
    with pytest.raises(ValueError, match="directory="):
        train(model, blob_data(n_train=64, n_test=32), CFG, seed=0, callbacks=[SnapshotCallback()])
    assert read_snapshots(tmp_path / "missing") == []
