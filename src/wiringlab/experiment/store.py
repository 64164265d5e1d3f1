"""The results folder on disk. Every file is written atomically (temp file + rename),
so a killed process leaves either the old file or the new one, never half of one.

Layout::

    <out>/summary.csv  table.md  figures/  report.html
    <out>/runs/<run-id>/config.yaml  metrics.jsonl  summary.json  weights.safetensors
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "write_json", "read_json", "RunFolder",
    "FINISHED", "write_csv", "to_jsonable",
]

FINISHED = ("completed", "diverged")  # statuses a resumed sweep skips; "failed" runs again


@functools.cache
def _umask() -> int:
    """The process umask, read once. Linux states it in /proc; elsewhere the only way to
    read it is to set it and put it back, done once, on the first write."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, inf) become None; tensors/numpy scalars become floats."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(path, buffer.getvalue())


class RunFolder:
    """The folder of one run: its config, streamed metrics, summary and weights."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def finished(self) -> bool:
        """True when a summary with a final status exists (the run is skipped on resume)."""
        if not self.summary_path.exists():
            return False
        try:
            return read_json(self.summary_path).get("status") in FINISHED
        except (OSError, ValueError):
            return False

    def start(self, config_dump: dict) -> None:
        """Begin (or restart) the run: write its config, clear partial metrics."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config_dump, sort_keys=False))
        self.metrics_path.unlink(missing_ok=True)

    def append_metrics(self, record: dict) -> None:
        """Append one epoch's record as a JSON line and flush it to disk."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(to_jsonable(record), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def read_summary(self) -> dict:
        return read_json(self.summary_path)

    def read_config(self) -> dict:
        """The run's config.yaml as written by `start` (a plain tree; `yaml.safe_load`)."""
        return yaml.safe_load((self.path / "config.yaml").read_text())

    def write_weights(self, state: dict, name: str = "weights.safetensors") -> None:
        """Save tensors with safetensors (never pickle), atomically."""
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        atomic_write_bytes(self.path / name, save(tensors))

    def read_weights(self, name: str = "weights.safetensors") -> dict:
        from safetensors.torch import load_file

        return load_file(str(self.path / name))
