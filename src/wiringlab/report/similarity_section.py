"""Report section: how similar are networks trained from different seeds?

For every pair of completed runs of the same config (and, with the recipe's
`analysis.similarity.across_configs`, of different configs), rebuilt from each run's
config.yaml and weights.safetensors on the CPU:

- raw cosine of the flattened effective weights, per linear layer and all together;
- the same after aligning the second run's hidden units to the first's
  (`wiringlab.analysis.similarity.match_weights`, Hungarian weight matching);
- linear CKA of each hidden layer's units on the first `test_samples` test inputs.

And for every run, permutation sensitivity of each hidden layer: accuracy on those
inputs after a seeded random shuffle of its units, alone and together with the next
layer's inputs (`wiringlab.analysis.permutation`).

Writes ``similarity.csv`` (one row per pair and layer), ``permutation_sensitivity.csv``
(one row per run and layer), and two tables (mean ± sample std, n) to table.md.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError

from ..analysis.permutation import (NotAChainError, PermutationSensitivity, chain_unit_extras, chain_weights,
                                    hidden_representations, permutation_sensitivity, unit_chain)
from ..analysis.similarity import linear_cka, weight_similarity
from ..data import DatasetError, load_dataset
from ..engine import to_device_data
from ..engine.tensors import capped_to_dataset
from ..experiment.config import AnalysisConfig, RunConfig
from ..experiment.execute import build_run_model
from ..experiment.store import RunFolder, write_csv
from ..seeding import make_generator
from .stats import summarize
from .table import group_by_label

__all__ = ["similarity_section"]

log = logging.getLogger(__name__)

_PAIR_COLUMNS = ["group", "layer", "run_a", "run_b", "seed_a", "seed_b", "raw_cos", "aligned_cos", "cka"]
_RUN_COLUMNS = ["label", "run_id", "seed", "layer", "units", "n_samples", "accuracy", "acc_shuffled",
                "acc_consistent", "drop_shuffled", "drop_consistent"]


@dataclass
class _RunView:
    """What the pair comparisons need of one run."""

    summary: dict
    weights: list[torch.Tensor]
    extras: list[torch.Tensor | None]
    representations: list[torch.Tensor]
    sensitivity: list[PermutationSensitivity]
    n_samples: int
    layer_names: list[str]  # module name of linear0, linear1, ... (`linear_layers` order)
    has_conv: bool  # convolutions are neither compared nor aligned


def _test_subset(config: RunConfig, cache: dict, samples: int):
    key = json.dumps(config.data.model_dump(mode="json"), sort_keys=True)
    if key not in cache:
        dataset = load_dataset(config.data.name, path=config.data.path, **config.data.options)
        data = to_device_data(dataset, capped_to_dataset(config.data, dataset), torch.device("cpu"))
        cache[key] = (data.x_test[:samples], data.y_test[:samples], data.input_shape, data.num_classes)
    return cache[key]


def _view(run_dir: Path, summary: dict, cache: dict, samples: int) -> _RunView:
    folder = RunFolder(run_dir)
    config = RunConfig.model_validate(folder.read_config())
    x, y, input_shape, num_classes = _test_subset(config, cache, samples)
    model = build_run_model(config, input_shape, num_classes, torch.device("cpu"), dense=True)
    model.load_state_dict(folder.read_weights())
    model.eval()
    hidden = unit_chain(model).layers[:-1]
    sensitivity = []
    for index, layer in enumerate(hidden):
        generator = make_generator(config.seed, f"permutation-sensitivity/{index}")
        perm = torch.randperm(layer.weight.shape[0], generator=generator)
        sensitivity.append(permutation_sensitivity(model, x, y, index, perm))
    names = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    has_conv = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
    return _RunView(summary, chain_weights(model), chain_unit_extras(model),
                    hidden_representations(model, x), sensitivity, len(x), names, has_conv)


def _same_shapes(a: list, b: list) -> bool:
    shape = lambda t: None if t is None else tuple(t.shape)  # noqa: E731
    return [shape(t) for t in a] == [shape(t) for t in b]


def _pair_rows(group: str, a: _RunView, b: _RunView) -> list[dict]:
    base = {"group": group, "run_a": a.summary["run_id"], "run_b": b.summary["run_id"],
            "seed_a": a.summary["seed"], "seed_b": b.summary["seed"]}
    similarity = None
    if _same_shapes(a.weights, b.weights):
        extras = (a.extras, b.extras) if _same_shapes(a.extras, b.extras) else (None, None)
        similarity = weight_similarity(a.weights, b.weights, *extras)
    rows = []
    for index in range(min(len(a.weights), len(b.weights))):
        cka = math.nan
        if index < min(len(a.representations), len(b.representations)) and a.n_samples == b.n_samples:
            cka = linear_cka(a.representations[index], b.representations[index])
        rows.append({**base, "layer": f"linear{index}", "cka": cka,
                     "raw_cos": similarity.raw[index] if similarity else math.nan,
                     "aligned_cos": similarity.aligned[index] if similarity else math.nan})
    rows.append({**base, "layer": "all", "cka": math.nan,
                 "raw_cos": similarity.raw_all if similarity else math.nan,
                 "aligned_cos": similarity.aligned_all if similarity else math.nan})
    return rows


def _pairs(groups: dict, across_configs: bool):
    for label, runs in groups.items():
        for a, b in itertools.combinations(runs, 2):
            yield label, a, b
    if across_configs:
        for (la, ra), (lb, rb) in itertools.combinations(groups.items(), 2):
            for a, b in itertools.product(ra, rb):
                yield f"{la} vs {lb}", a, b


def _sensitivity_rows(view: _RunView) -> list[dict]:
    return [{"label": view.summary["label"], "run_id": view.summary["run_id"], "seed": view.summary["seed"],
             "layer": f"linear{index}", "units": view.weights[index].shape[0], "n_samples": view.n_samples,
             "accuracy": s.accuracy, "acc_shuffled": s.shuffled, "acc_consistent": s.consistent,
             "drop_shuffled": s.drop_shuffled, "drop_consistent": s.drop_consistent}
            for index, s in enumerate(view.sensitivity)]


def _grouped(rows: list[dict], keys: tuple[str, str]) -> dict:
    groups: dict = {}
    for row in rows:
        groups.setdefault((row[keys[0]], row[keys[1]]), []).append(row)
    return groups


def _layer_note(views) -> str:
    """Which module each `linearN` is (per architecture), and what is left out."""
    kinds = list(dict.fromkeys((tuple(v.layer_names), v.has_conv) for v in views))
    names = "; ".join(", ".join(f"linear{i} = `{n}`" for i, n in enumerate(layer_names)) for layer_names, _ in kinds)
    note = f"Layers: the model's linear layers in forward order ({names}); `all` pools them."
    if any(conv for _, conv in kinds):
        note += (" Convolutions are neither compared nor aligned: their channels stay in place, so the first linear "
                 "layer after them is aligned on its outputs only.")
    return note


def _markdown(pair_rows: list[dict], run_rows: list[dict], samples: str, layer_note: str) -> str:
    lines = ["", "## Similarity across seeds", "",
             "Raw: cosine of two runs' flattened effective weights. Aligned: the same after matching the "
             "second run's hidden units to the first's (Hungarian weight matching, layer by layer, "
             "propagated to the next layer's inputs). CKA: linear CKA of the layer's units (post-activation) "
             f"on the first {samples} test samples. Mean ± sample std over pairs of runs (n pairs); "
             f"every pair in `similarity.csv`. {layer_note}", "",
             "| config | layer | n pairs | raw cosine | aligned cosine | linear CKA |", "|---|---|---|---|---|---|"]
    for (group, layer), rows in _grouped(pair_rows, ("group", "layer")).items():
        cells = [summarize([r[k] for r in rows]).format() for k in ("raw_cos", "aligned_cos", "cka")]
        lines.append(f"| {group} | {layer} | {len(rows)} | " + " | ".join(cells) + " |")
    lines += ["", "### Permutation sensitivity", "",
              f"Accuracy on the first {samples} test samples after a seeded random shuffle of a hidden layer's "
              "units (raw weight rows, bias, BatchNorm, and what belongs to a unit, such as its sparse mask row), "
              "alone and together with the next layer's input columns. Buffers that belong to positions, such as "
              "kernels, stay in place, so a plain or sparse layer shuffled together with the next layer computes "
              "the same function, and a positional prior does not. Mean ± sample std over runs (n); "
              "every run in `permutation_sensitivity.csv`.", "",
              "| config | layer | n runs | accuracy | units shuffled alone | shuffled with next layer's inputs |",
              "|---|---|---|---|---|---|"]
    for (label, layer), rows in _grouped(run_rows, ("label", "layer")).items():
        cells = [summarize([r[k] for r in rows]).format() for k in ("accuracy", "acc_shuffled", "acc_consistent")]
        lines.append(f"| {label} | {layer} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def similarity_section(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    """REPORT_SECTIONS entry (see module doc); ("", {}) when no config has two finished
    runs with saved weights, or the recipe switched it off. Multitask runs are left out (their
    network is not the MLP their config's `model` describes)."""
    out_dir = Path(out_dir)
    config = AnalysisConfig.model_validate(recipe.get("analysis") or {}).similarity
    usable = [s for s in summaries if s["status"] == "completed" and not s.get("multitask")  # other model
              and (out_dir / "runs" / s["run_id"] / "weights.safetensors").exists()]
    groups = group_by_label(usable)
    pairs = list(_pairs(groups, config.across_configs))
    if not config.enabled or not pairs:
        return "", {}
    cache, views = {}, {}
    try:
        for s in usable:
            views[s["run_id"]] = _view(out_dir / "runs" / s["run_id"], s, cache, config.test_samples)
    except (DatasetError, NotAChainError, ValidationError) as err:  # e.g. a config from an older version
        log.warning("similarity across seeds not computed: %s", err)
        return f"\n## Similarity across seeds\n\nNot computed: {err}\n", {}
    pair_rows = [row for group, a, b in pairs for row in _pair_rows(group, views[a["run_id"]], views[b["run_id"]])]
    run_rows = [row for view in views.values() for row in _sensitivity_rows(view)]
    paths = {"similarity_csv": out_dir / "similarity.csv",
             "permutation_sensitivity_csv": out_dir / "permutation_sensitivity.csv"}
    write_csv(paths["similarity_csv"], pair_rows, _PAIR_COLUMNS)
    write_csv(paths["permutation_sensitivity_csv"], run_rows, _RUN_COLUMNS)
    samples = "/".join(str(n) for n in sorted({v.n_samples for v in views.values()}))
    return _markdown(pair_rows, run_rows, samples, _layer_note(views.values())), paths
