"""Reading the JSON files of a results folder, with errors that name a damaged file and the fix.

wiringlab writes every JSON file atomically (`experiment.store`), and a run's metrics.jsonl
line by line, each complete before the next epoch and all before the run's summary. So a
file of a finished run that does not parse was damaged from outside (a full disk while
copying, a partial sync, an editor). Such a file is an error, never skipped: a table that
silently left a run out would misreport its config's mean and n.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..experiment.store import RunFolder
from .errors import CorruptResultsError

__all__ = ["read_json_file", "read_run_summary", "read_run_metrics", "read_finished_metrics", "rerun_run_fix",
           "RERUN_RECIPE_FIX"]

RERUN_RECIPE_FIX = ("rerun the recipe (the same `wiringlab run` command): it writes recipe.json again "
                    "and retrains no finished run")


def rerun_run_fix(folder: RunFolder) -> str:
    """The fix for a damaged file of one run: delete its folder and rerun, which retrains only it."""
    return (f"delete that run's folder {folder.path}/ and rerun the recipe (the same `wiringlab run` "
            "command), which retrains only that run")


_ATOMIC = "wiringlab writes this file atomically"
_FINISHED_LINES = "wiringlab writes every line of it before the run's summary"
_ONE_WRITER = "wiringlab appends one line per epoch, in order, from one process"


def _damaged(path: Path, problem: str, fix: str, why: str = _ATOMIC) -> CorruptResultsError:
    return CorruptResultsError(f"{path}: {problem}. {why}, so it was damaged from outside; to fix it, {fix}")


def _read_text(path: Path, fix: str, why: str = _ATOMIC) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise _damaged(path, f"not text ({err})", fix, why) from err


def read_json_file(path: Path, fix: str, expected: type = dict):
    """The JSON value of `path`, which must be of type `expected`.

    Args:
        path: a JSON file of a results folder.
        fix: what the user should do if the file is damaged (ends the error message).
        expected: the type of the top-level value (dict for a JSON object, list for an array).

    Returns:
        The parsed value.

    Raises:
        CorruptResultsError: the file is not valid JSON, or holds a value of another type;
            the message names the file, what is wrong and `fix`.
    """
    text = _read_text(path, fix)
    try:
        data = json.loads(text)
    except ValueError as err:
        raise _damaged(path, f"not valid JSON ({err})", fix) from err
    if not isinstance(data, expected):
        raise _damaged(path, f"holds a JSON {type(data).__name__}, not a {expected.__name__}", fix)
    return data


def read_run_summary(folder: RunFolder) -> dict:
    """A run's summary.json (`RunFolder.read_summary`, checked).

    Raises:
        CorruptResultsError: summary.json is not a valid JSON object; the fix named is
            deleting the run's folder and rerunning the recipe.
    """
    return read_json_file(folder.summary_path, rerun_run_fix(folder))


def _line_problem(number: int, last: bool, err: ValueError) -> str:
    if last:  # no newline after it: the file ends inside this record
        return f"line {number} is truncated (the file ends in the middle of a record)"
    return f"line {number} is not valid JSON ({err})"


def read_run_metrics(folder: RunFolder) -> list[dict]:
    """A run's metrics.jsonl, one record per epoch (`RunFolder.read_metrics`, checked); [] if absent.

    Raises:
        CorruptResultsError: a line is not a JSON object (e.g. a truncated last line); the
            message gives the line number, and the fix named is deleting the run's folder
            and rerunning the recipe.
    """
    path, fix = folder.metrics_path, rerun_run_fix(folder)
    if not path.exists():
        return []
    lines = _read_text(path, fix, _FINISHED_LINES).split("\n")  # a complete file ends in "\n": last is ""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise _damaged(path, _line_problem(number, number == len(lines), err), fix, _FINISHED_LINES) from err
        if not isinstance(record, dict):
            problem = f"line {number} holds a JSON {type(record).__name__}, not an object"
            raise _damaged(path, problem, fix, _FINISHED_LINES)
        records.append(record)
    _check_epoch_sequence(path, records, fix)
    return records


def read_finished_metrics(folder: RunFolder, summary: dict) -> list[dict]:
    """metrics.jsonl of a run with a summary (`read_run_metrics`), checked to hold every epoch
    the summary records; [] when the file is absent (a Ray run written on another node).

    Raises:
        CorruptResultsError: as `read_run_metrics`, or the file holds fewer or more epochs than
            summary.json's `epochs` (a curve averaged over it would mix n across epochs).
    """
    records, epochs = read_run_metrics(folder), summary.get("epochs")
    if records and isinstance(epochs, int) and len(records) != epochs:
        problem = f"it holds {len(records)} epochs, but the run's summary.json records {epochs}"
        raise _damaged(folder.metrics_path, problem, rerun_run_fix(folder), _FINISHED_LINES)
    return records


def _check_epoch_sequence(path: Path, records: list[dict], fix: str) -> None:
    """Epochs 1, 2, …, n, each once: anything else is two writers in one run folder (a
    sweep's orphaned worker and its resumption), whose curves would be garbage."""
    epochs = [record.get("epoch") for record in records]
    if None in epochs or epochs == list(range(1, len(epochs) + 1)):
        return
    wrong = next(i for i, epoch in enumerate(epochs) if epoch != i + 1)
    problem = (f"line {wrong + 1} is epoch {epochs[wrong]} where epoch {wrong + 1} belongs ({len(epochs)} records: "
               "two processes wrote this run at once)")
    raise _damaged(path, problem, fix, _ONE_WRITER)
