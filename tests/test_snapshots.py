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
    assert snapshot_layers(model, "all") == ["linear0", "linear1", "linear2"]
    assert snapshot_layers(model, "hidden") == ["linear0", "linear1"] and snapshot_layers(model, [2, 0]) == [
        "linear0", "linear2"]
    with pytest.raises(ValueError, match=r"\[3\] out of range.*2: \(4, 8\)"):
        snapshot_layers(model, [3])
    with pytest.raises(ValueError, match="directory="):
        train(model, blob_data(n_train=64, n_test=32), CFG, seed=0, callbacks=[SnapshotCallback()])
    assert read_snapshots(tmp_path / "missing") == []


def test_a_lenets_convolutions_are_hidden_layers_and_in_the_effective_weights(tmp_path):
    from wiringlab.experiment.config import LeNetConfig
    from wiringlab.experiment.execute import effective_weights

    model = init_parameters_(build_model(LeNetConfig(hidden=[10], channels=(3, 4)), (1, 16, 16), 4),
                             make_generator(0, "init"))
    assert snapshot_layers(model, "hidden") == ["conv0", "conv1", "linear0"]
    assert snapshot_layers(model, "all") == ["conv0", "conv1", "linear0", "linear1"]
    assert snapshot_layers(model, [0]) == ["linear0"]  # indices stay those of linear_layers
    from wiringlab.engine import DeviceData

    blobs = blob_data(n_train=64, n_test=32, dim=256, classes=4)
    data = DeviceData(blobs.x_train.view(-1, 1, 16, 16), blobs.y_train, blobs.x_test.view(-1, 1, 16, 16),
                      blobs.y_test, (1, 16, 16), 4)
    train(model, data, CFG, seed=0, callbacks=[SnapshotCallback()], run_dir=tmp_path)
    _, last = read_snapshots(tmp_path / "snapshots")[-1]
    assert last["conv0"].shape == (3, 1, 5, 5) and torch.equal(last["conv0"], model.features[0].weight.detach())
    final = effective_weights(model)
    assert list(final) == ["conv0", "conv1", "linear0", "linear1"]
    assert all(torch.equal(tensor, final[name]) for name, tensor in last.items())
