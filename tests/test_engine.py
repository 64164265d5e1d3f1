import math

import pytest
import torch

from helpers import blob_data
from wiringlab.engine import Callback, train
from wiringlab.experiment.config import MLPConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator


def _model(seed=0, **kw):
    model = build_model(MLPConfig(hidden=[32], **kw), (20,), 4)
    return init_parameters_(model, make_generator(seed, "init"))


def _cfg(**kw):
    base = dict(epochs=3, batch_size=64, progress=False, optimizer={"name": "sgd", "lr": 0.1})
    base.update(kw)
    return TrainConfig(**base)


def test_training_learns_blobs():
    result = train(_model(), blob_data(), _cfg(), seed=0)
    assert result.status == "completed"
    assert len(result.history) == 3
    assert result.final["test_acc"] > 0.85  # chance is 0.25
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_numbers_with_dropout():
    a = train(_model(0, dropout=0.3), blob_data(), _cfg(), seed=5)
    b = train(_model(0, dropout=0.3), blob_data(), _cfg(), seed=5)
    c = train(_model(0, dropout=0.3), blob_data(), _cfg(), seed=6)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert strip(a.history) != strip(c.history)


def test_huge_learning_rate_is_recorded_as_diverged():
    cfg = _cfg(epochs=5, optimizer={"name": "sgd", "lr": 1e12, "momentum": 0.9})
    result = train(_model(), blob_data(), cfg, seed=0)
    assert result.status == "diverged"
    assert 1 <= len(result.history) < 5
    assert not math.isfinite(result.history[-1]["train_loss"])


def test_weights_that_blow_up_in_the_last_step_make_the_run_diverged():
    # one step per epoch, one epoch: the train loss is taken before the step that breaks the
    # weights; the test loss is NaN, and argmax of NaN logits would give a finite test_acc
    cfg = _cfg(epochs=1, batch_size=64, optimizer={"name": "sgd", "lr": 1e37})
    result = train(_model(), blob_data(n_train=64), cfg, seed=0)
    assert math.isfinite(result.final["train_loss"])
    assert result.status == "diverged" and math.isnan(result.final["test_acc"])


def test_batchnorm_with_a_last_batch_of_one_sample_is_refused_up_front():
    data = blob_data(n_train=257)  # 8 batches of 32 and one of 1
    with pytest.raises(ValueError, match="257 training samples at batch_size 32 leave a last batch of 1"):
        train(_model(batchnorm=True), data, _cfg(batch_size=32), seed=0)
    assert train(_model(), data, _cfg(batch_size=32, epochs=1), seed=0).status == "completed"  # no BatchNorm
    with pytest.raises(ValueError, match="train.batch_size is 1 and data.n_train 256: raise both"):
        train(_model(batchnorm=True), blob_data(n_train=256), _cfg(batch_size=1), seed=0)  # every batch is 1
    # BatchNorm2d normalises over an image's positions too: one image per batch trains
    from wiringlab.engine import DeviceData
    from wiringlab.experiment.config import LeNetConfig

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 1, 28, 28, generator=g), torch.arange(6) % 3
    lenet = init_parameters_(build_model(LeNetConfig(conv_batchnorm=True), (1, 28, 28), 3), make_generator(0, "init"))
    result = train(lenet, DeviceData(x, y, x, y, (1, 28, 28), 3), _cfg(batch_size=1, epochs=1), seed=0)
    assert result.status == "completed"


class _Recorder(Callback):
    def __init__(self):
        self.events, self.progress = [], []

    def on_train_start(self, state):
        self.events.append("start")

    def on_step_end(self, state):
        self.progress.append(state.progress)

    def on_epoch_end(self, state):
        self.events.append(f"epoch{state.epoch}")
        return {"custom_metric": float(state.epoch)}

    def on_train_end(self, state):
        self.events.append("end")


def test_callbacks_see_boundaries_and_progress():
    rec = _Recorder()
    data = blob_data(n_train=256)
    result = train(_model(), data, _cfg(epochs=2, batch_size=64), seed=0, callbacks=[rec])
    assert rec.events == ["start", "epoch1", "epoch2", "end"]
    assert len(rec.progress) == 8 and rec.progress[-1] == 1.0
    assert [r["custom_metric"] for r in result.history] == [1.0, 2.0]


def test_l1_penalty_shrinks_weights():
    plain = _model()
    sparse = _model()
    train(plain, blob_data(), _cfg(), seed=0)
    train(sparse, blob_data(), _cfg(l1=1e-2), seed=0)
    assert sparse.stack.hidden[0][0].weight.abs().sum() < 0.8 * plain.stack.hidden[0][0].weight.abs().sum()


def test_every_optimizer_and_schedule_trains():
    for opt in ("sgd", "adam", "adamw", "rmsprop"):
        for sched in ("constant", "cosine", "step"):
            lr = 0.1 if opt == "sgd" else 0.01
            cfg = _cfg(epochs=2, optimizer={"name": opt, "lr": lr, "momentum": 0.5, "nesterov": opt == "sgd"},
                       lr_schedule={"name": sched, "step_size": 1, "gamma": 0.5})
            result = train(_model(), blob_data(), cfg, seed=0)
            assert result.final["test_acc"] > 0.6, (opt, sched)
            if sched == "step":
                assert result.history[1]["lr"] == lr * 0.5


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_with_a_parameter_reached_later_equals_torch(nesterov):
    """A parameter whose first gradient comes after step 1 (torch's fused SGD raised a
    TypeError there): `build_optimizer`'s SGD equals torch's plain SGD, bit for bit."""
    from wiringlab.engine.optim import build_optimizer
    from wiringlab.experiment.config import OptimizerConfig

    g = torch.Generator().manual_seed(0)
    start = [torch.randn(7, 5, generator=g), torch.randn(7, generator=g)]
    grads = [[torch.randn(7, 5, generator=g), None if step == 0 else torch.randn(7, generator=g)]
             for step in range(4)]
    config = OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)

    def run(make):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = make(params)
        for grad in grads:
            for p, gr in zip(params, grad):
                p.grad = None if gr is None else gr.clone()
            optimizer.step()
        return params

    ours = run(lambda ps: build_optimizer(ps, config))
    reference = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-3,
                                               foreach=False))
    for a, b in zip(ours, reference):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad, message", [
    (lambda y: y - 1, r"train labels span \[-1, 2\] but num_classes is 4"),  # a wrapped index in the fused step
    (lambda y: y + 1, r"train labels span \[1, 4\] but num_classes is 4"),
    (lambda y: y.float(), r"train labels must be int64"),
    (lambda y: y[:-1], r"train split: 300 inputs but 299 labels"),
])
def test_device_data_refuses_labels_that_training_would_misread(bad, message):
    from wiringlab.engine import DeviceData

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 5, generator=g), torch.arange(300) % 4
    DeviceData(x, y, x[:10], y[:10], (5,), 4)  # the good labels pass
    with pytest.raises(ValueError, match=message):
        DeviceData(x, bad(y), x[:10], y[:10], (5,), 4)


def test_device_data_refuses_empty_splits_and_non_finite_inputs():
    """Each would otherwise look like a result: accuracy 0 on no test samples, a ZeroDivisionError
    mid-sweep, or a run recorded as diverged for a data problem."""
    from wiringlab.engine import DeviceData

    x, y = torch.randn(40, 5), torch.arange(40) % 4
    with pytest.raises(ValueError, match="test split is empty"):
        DeviceData(x, y, x[:0], y[:0], (5,), 4)
    with pytest.raises(ValueError, match="train split is empty"):
        DeviceData(x[:0], y[:0], x, y, (5,), 4)
    x_bad = x.clone()
    x_bad[3, 1], x_bad[7, 2] = float("nan"), float("inf")
    with pytest.raises(ValueError, match="test inputs hold 2 NaN or infinite values"):
        DeviceData(x, y, x_bad, y, (5,), 4)


def test_cosine_schedule_values_with_a_floor():
    """lr factor of epoch e of E: min + (1 - min)·(1 + cos(π e/E))/2; reaches the floor at e = E."""
    from wiringlab.engine.optim import lr_factor
    from wiringlab.experiment.config import LRScheduleConfig

    cfg = LRScheduleConfig(name="cosine", min_lr_ratio=0.1)
    assert lr_factor(cfg, 0, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 5, 10) == pytest.approx(0.55)
    assert lr_factor(cfg, 10, 10) == pytest.approx(0.1)
    assert lr_factor(LRScheduleConfig(name="cosine"), 9, 10) == pytest.approx(0.5 * (1 + math.cos(0.9 * math.pi)))


def test_a_first_n_subset_that_loses_classes_is_reported(caplog):
    from wiringlab.data.dataset import Dataset
    from wiringlab.engine import to_device_data
    from wiringlab.experiment.config import DataConfig

    by_class = torch.arange(3).repeat_interleave(10)  # a file ordered by class: 0…0 1…1 2…2
    dataset = Dataset(name="ordered", x_train=torch.randn(30, 4), y_train=by_class, x_test=torch.randn(30, 4),
                      y_test=by_class, input_shape=(4,), classes=("a", "b", "c"), citation="-", source="-")
    with caplog.at_level("WARNING"):
        to_device_data(dataset, DataConfig(name="synthetic", n_train=15, n_test=30), torch.device("cpu"))
    assert "data.n_train=15 keeps the first 15 train samples of 'ordered', which hold no sample of class 2" \
        in caplog.text and "n_test" not in caplog.text


def test_a_float64_runs_losses_are_summed_in_float64():
    """The loss history of a float64 run keeps float64 precision (summed in float32 it was off
    by ~1e-7), with a last partial evaluation batch."""
    import torch.nn.functional as F

    from wiringlab.engine.trainer import evaluate

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(77, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (77,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    loss, accuracy = evaluate(model, x, y, 10)
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-13, abs=0)
    assert accuracy == (logits.argmax(1) == y).double().mean().item()
