"""Optional TensorBoard logging of per-epoch metrics (`wiringlab run ... --tensorboard`).

An `on_epoch` consumer: it receives each epoch's record (the same dict that goes to
metrics.jsonl) and writes every numeric entry as a scalar at step = epoch, so the
training loop knows nothing about it. Needs the `tensorboard` extra
(`pip install 'wiringlab[tensorboard]'`); asking for it without the package is an
error that says so, never a silent no-op.
"""

from __future__ import annotations

from pathlib import Path

from .errors import MissingExtraError

__all__ = ["TensorBoardLogger", "require_tensorboard"]


def require_tensorboard():
    """torch's `SummaryWriter` class.

    Raises:
        MissingExtraError: the tensorboard package is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch raises ImportError when the tensorboard package is absent
        raise MissingExtraError("--tensorboard needs the tensorboard package, which is not installed: "
                                "pip install 'wiringlab[tensorboard]' (or leave out --tensorboard)") from err
    return SummaryWriter


class TensorBoardLogger:
    """Writes each epoch record's numeric entries as TensorBoard scalars.

    Args:
        log_dir: the event files' folder (a run's `tensorboard/`).

    Use as `on_epoch=logger` (or call it from another consumer); `close()` flushes.
    Non-finite values (a diverged epoch) are written as they are, so the curve shows it.
    """

    def __init__(self, log_dir: Path) -> None:
        self.writer = require_tensorboard()(log_dir=str(log_dir))

    def __call__(self, record: dict) -> None:
        step = int(record.get("epoch", 0))
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

