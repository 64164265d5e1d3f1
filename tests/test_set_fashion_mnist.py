"""Real data: SET on Fashion-MNIST reaches a test-accuracy floor a broken layer cannot.

784-256(sparse, ε = 20: 10.4% of the weights)-10, SGD 0.05 / momentum 0.9, two epochs
on the full training set with one SET evolution (ζ = 0.3) between them. Measured (seed 0,
2-core CPU): 0.835. The floor, 0.80, is out of reach for a sparse layer that does not
train: freezing it (only the classifier learns on its random features) gives 0.753; a
layer whose mask zeroed everything gives chance, 0.10.
"""

import pytest
import torch

from conftest import needs_fashion
from wiringlab.data import load_dataset
from wiringlab.engine import to_device_data, train
from wiringlab.engine.evolution import SETCallback, sparse_layers
from wiringlab.experiment.config import DataConfig, MLPConfig, SETConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator

pytestmark = [needs_fashion, pytest.mark.realdata]


def test_short_set_run_on_fashion_mnist_reaches_the_floor():
    data = to_device_data(load_dataset("fashion-mnist"), DataConfig(name="fashion-mnist", normalize="minmax"),
                          torch.device("cpu"))
    model = build_model(MLPConfig(hidden=[256], layer={"type": "sparse"}), data.input_shape, 10)
    init_parameters_(model, make_generator(0, "init"))
    layer = sparse_layers(model)[0]
    start_mask = layer.mask.clone()
    cfg = TrainConfig(epochs=2, batch_size=128, progress=False,
                      optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9})
    result = train(model, data, cfg, seed=0, callbacks=[SETCallback([layer], SETConfig(zeta=0.3))])
    assert result.final["test_acc"] >= 0.80, result.final
    assert layer.num_active == 20 * (784 + 256)  # exact density after the evolution
    moved = int((start_mask.bool() & ~layer.mask.bool()).sum())
    assert moved > 0.2 * layer.num_active  # the evolution did move connections
