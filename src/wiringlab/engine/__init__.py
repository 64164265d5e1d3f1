"""The training engine: data on the device, one loop, callbacks."""

from .callbacks import Callback, CallbackList, TrainState
from .optim import build_lr_scheduler, build_optimizer
from .tensors import DeviceData, iterate_batches, to_device_data
from .trainer import TrainResult, evaluate, train

__all__ = [
    "Callback", "CallbackList", "TrainState", "build_optimizer", "build_lr_scheduler",
    "DeviceData", "to_device_data", "iterate_batches", "TrainResult", "train", "evaluate",
]
