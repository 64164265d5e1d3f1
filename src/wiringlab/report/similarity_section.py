"""Report section: how similar are networks trained from different seeds?

For every pair of completed runs of the same config (and, with the recipe's
`analysis.similarity.across_configs`, of different configs), rebuilt from each run's
config.yaml and weights.safetensors on the CPU:

- raw cosine of the flattened effective weights, per layer (convolutions and linear
  layers, `analysis.permutation.unit_chain`) and all together;
- the same after aligning the second run's hidden units (a convolution's channels) to the
  first's (`analysis.similarity.matching`: `forward`, `wiringlab.analysis.similarity.match_weights`,
  one Hungarian pass; `full`, `wiringlab.analysis.weight_matching.rebasin_weights`);
- linear CKA of each hidden layer's units on the first `test_samples` test inputs.
- the same three for the pair's untrained networks (each config and seed as built): the
  level that matching and CKA reach by chance, which a trained value is to be read against.

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
from ..analysis.similarity import linear_cka, match_weights, weight_similarity
from ..analysis.weight_matching import rebasin_weights
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

_METRICS = ("raw_cos", "aligned_cos", "cka")
_PAIR_COLUMNS = ["group", "layer", "run_a", "run_b", "seed_a", "seed_b", *_METRICS, *(f"{m}_init" for m in _METRICS)]
_RUN_COLUMNS = ["label", "run_id", "seed", "layer", "units", "n_samples", "accuracy", "acc_shuffled",
                "acc_consistent", "drop_shuffled", "drop_consistent"]


@dataclass
class _ChainState:
    """A network's chain at one moment: weights, per-unit extras, hidden representations."""

    weights: list[torch.Tensor]
    extras: list[torch.Tensor | None]
    representations: list[torch.Tensor]


@dataclass
class _RunView:
    """What the pair comparisons need of one run."""

    summary: dict
    trained: _ChainState
    init: _ChainState  # the same config and seed as built, before training: the chance level
    init_is_own_start: bool  # False: trained on a GPU, rebuilt on the CPU (another draw)
    sensitivity: list[PermutationSensitivity]
    n_samples: int
    layer_names: list[str]  # conv0, ..., linear0, ... (`UnitChain.names`)
    layer_paths: list[str]  # their module names in the model
    inputs: torch.Tensor  # the test samples (as stored, before normalisation) its representations answer


def _test_subset(config: RunConfig, cache: dict, samples: int):
    key = json.dumps(config.data.model_dump(mode="json"), sort_keys=True)
    if key not in cache:
        dataset = load_dataset(config.data.name, path=config.data.path, **config.data.options)
        data = to_device_data(dataset, capped_to_dataset(config.data, dataset), torch.device("cpu"))
        x = data.x_test[:samples]
        # the samples as stored: runs normalised by other training subsets still answer the same samples
        cache[key] = (x, data.y_test[:samples], data.input_shape, data.num_classes, dataset.x_test[: len(x)])
    return cache[key]


def _chain_state(model: torch.nn.Module, x: torch.Tensor) -> _ChainState:
    return _ChainState(chain_weights(model), chain_unit_extras(model), hidden_representations(model, x))


def _sensitivity_stream(name: str) -> str:
    """The generator stream of a layer's shuffle: linear layers keep the index they had
    before convolutions joined the chain (`permutation-sensitivity/0` for linear0)."""
    return f"permutation-sensitivity/{name.removeprefix('linear')}"


def _untrained(config: RunConfig, summary: dict, input_shape, num_classes) -> tuple[torch.nn.Module, bool]:
    """The run's network before training, on the CPU, and whether it is the run's own start:
    a CUDA generator draws another sequence than the CPU's, so a run trained on a GPU is
    rebuilt there when this machine has one, else it is another draw of the same config."""
    device = str((summary.get("provenance") or {}).get("device", "cpu"))
    on_gpu = device.startswith("cuda")
    exact = device == "cpu" or (on_gpu and torch.cuda.is_available())
    build_on = torch.device("cuda" if on_gpu and exact else "cpu")
    model = build_run_model(config, input_shape, num_classes, build_on, dense=True)
    return model.to("cpu").eval(), exact


def _view(run_dir: Path, summary: dict, cache: dict, samples: int) -> _RunView:
    folder = RunFolder(run_dir)
    config = RunConfig.model_validate(folder.read_config())
    x, y, input_shape, num_classes, samples_as_stored = _test_subset(config, cache, samples)
    model, own_start = _untrained(config, summary, input_shape, num_classes)
    init = _chain_state(model, x)
    model.load_state_dict(folder.read_weights())
    chain = unit_chain(model)
    sensitivity = []
    for index, (layer, name) in enumerate(zip(chain.layers[:-1], chain.names)):
        perm = torch.randperm(layer.weight.shape[0], generator=make_generator(config.seed, _sensitivity_stream(name)))
        sensitivity.append(permutation_sensitivity(model, x, y, index, perm))
    return _RunView(summary, _chain_state(model, x), init, own_start, sensitivity, len(x), chain.names, chain.paths,
                    samples_as_stored)


def _same_shapes(a: list, b: list) -> bool:
    shape = lambda t: None if t is None else tuple(t.shape)  # noqa: E731
    return [shape(t) for t in a] == [shape(t) for t in b]


def _same_inputs(a: _RunView, b: _RunView) -> bool:
    """Whether two runs' representations answer the same test samples: CKA compares two
    networks' responses to one set of inputs (configs of another dataset or split do not)."""
    return a.inputs is b.inputs or (a.inputs.shape == b.inputs.shape and torch.equal(a.inputs, b.inputs))


def _compare(a: _ChainState, b: _ChainState, index_a: int, index_b: int, similarity, same_inputs: bool) -> dict:
    """Raw and aligned cosine (from `similarity`, None when the chains differ in shape) and
    CKA of layer index_a of A against layer index_b of B (NaN for a classifier, or when the
    two runs saw different inputs)."""
    cka = math.nan
    if same_inputs and index_a < len(a.representations) and index_b < len(b.representations):
        cka = linear_cka(a.representations[index_a], b.representations[index_b])
    return {"raw_cos": similarity.raw[index_a] if similarity else math.nan,
            "aligned_cos": similarity.aligned[index_a] if similarity else math.nan, "cka": cka}


MATCHING = {"forward": (match_weights, "Hungarian weight matching, layer by layer in one forward pass, scoring "
                                       "each unit's incoming weights and propagated to the next layer's inputs"),
            "full": (rebasin_weights, "full Git Re-Basin weight matching: from the forward pass, each layer's "
                                      "units re-matched on incoming and outgoing weights until no permutation "
                                      "changes")}


def _similarity(a: _ChainState, b: _ChainState, match):
    if not _same_shapes(a.weights, b.weights):
        return None
    extras = (a.extras, b.extras) if _same_shapes(a.extras, b.extras) else (None, None)
    return weight_similarity(a.weights, b.weights, *extras, match=match)


def _pair_rows(group: str, a: _RunView, b: _RunView, match) -> list[dict]:
    """One row per layer name both runs have (a LeNet and an MLP share their linear layers'
    names, not their positions), and one for all layers; trained and at init."""
    base = {"group": group, "run_a": a.summary["run_id"], "run_b": b.summary["run_id"],
            "seed_a": a.summary["seed"], "seed_b": b.summary["seed"]}
    trained, init = _similarity(a.trained, b.trained, match), _similarity(a.init, b.init, match)
    same = _same_inputs(a, b)
    rows = []
    for index_a, name in enumerate(a.layer_names):
        if name in b.layer_names:
            index_b = b.layer_names.index(name)
            now = _compare(a.trained, b.trained, index_a, index_b, trained, same)
            before = _compare(a.init, b.init, index_a, index_b, init, same)
            rows.append({**base, "layer": name, **now, **{f"{k}_init": v for k, v in before.items()}})
    everything = {"cka": math.nan, "cka_init": math.nan}
    for suffix, sim in (("", trained), ("_init", init)):
        everything.update({f"raw_cos{suffix}": sim.raw_all if sim else math.nan,
                           f"aligned_cos{suffix}": sim.aligned_all if sim else math.nan})
    return [*rows, {**base, "layer": "all", **everything}]


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
             "layer": view.layer_names[index], "units": view.trained.weights[index].shape[0],
             "n_samples": view.n_samples,
             "accuracy": s.accuracy, "acc_shuffled": s.shuffled, "acc_consistent": s.consistent,
             "drop_shuffled": s.drop_shuffled, "drop_consistent": s.drop_consistent}
            for index, s in enumerate(view.sensitivity)]


def _grouped(rows: list[dict], keys: tuple[str, str]) -> dict:
    groups: dict = {}
    for row in rows:
        groups.setdefault((row[keys[0]], row[keys[1]]), []).append(row)
    return groups


def _layer_note(views) -> str:
    """Which module each layer name is (per architecture), and what a convolution's units are."""
    kinds = list(dict.fromkeys(tuple(zip(v.layer_names, v.layer_paths)) for v in views))
    names = "; ".join(", ".join(f"{name} = `{path}`" for name, path in kind) for kind in kinds)
    note = f"Layers: the model's weight layers in forward order ({names}); `all` pools them."
    if any(name.startswith("conv") for kind in kinds for name, _ in kind):
        note += (" A convolution's units are its output channels: a channel's filter is matched as one vector, "
                 "moves with its bias and BatchNorm, and carries the next layer's input channels (or its block "
                 "of flattened inputs) along; its CKA reads the stage's output after pooling.")
    elsewhere = sum(not v.init_is_own_start for v in views)
    if elsewhere:
        note += (f" {elsewhere} run(s) trained on a GPU were rebuilt untrained on the CPU, whose random draws differ "
                 "from the GPU's: their at-init values are another draw of the same config, not those runs' own "
                 "start (a machine with a GPU rebuilds them exactly).")
    return note


def _markdown(pair_rows: list[dict], run_rows: list[dict], samples: str, layer_note: str, matching: str) -> str:
    lines = ["", "## Similarity across seeds", "",
             "Raw: cosine of two runs' flattened effective weights. Aligned: the same after matching the "
             f"second run's hidden units to the first's ({MATCHING[matching][1]}; "
             f"`analysis.similarity.matching: {matching}`). CKA: linear CKA of the layer's units (post-activation) "
             f"on the first {samples} test samples. At init: the same pairs' networks as their config and seeds "
             "build them, untrained: what matching and CKA reach by chance for this architecture (more units give "
             "the matching more candidates). Mean ± sample std over pairs of runs (n pairs); "
             f"every pair in `similarity.csv`. {layer_note}", "",
             "| config | layer | n pairs | raw cosine | aligned cosine | linear CKA | aligned at init | CKA at init |",
             "|---|---|---|---|---|---|---|---|"]
    for (group, layer), rows in _grouped(pair_rows, ("group", "layer")).items():
        keys = ("raw_cos", "aligned_cos", "cka", "aligned_cos_init", "cka_init")
        cells = [summarize([r[k] for r in rows]).format() for k in keys]
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
    candidates = [s for s in summaries if s["status"] == "completed" and not s.get("multitask")]  # other model
    weighted = {s["run_id"]: (out_dir / "runs" / s["run_id"] / "weights.safetensors").exists() for s in candidates}
    usable = [s for s in candidates if weighted[s["run_id"]]]
    groups = group_by_label(usable)
    pairs = list(_pairs(groups, config.across_configs))
    if not config.enabled or not pairs:
        return "", {}
    cache, views = {}, {}
    try:
        for s in usable:
            views[s["run_id"]] = _view(out_dir / "runs" / s["run_id"], s, cache, config.test_samples)
    except (DatasetError, NotAChainError, ValidationError, OSError) as err:  # an older config, a file deleted
        log.warning("similarity across seeds not computed: %s", err)
        return f"\n## Similarity across seeds\n\nNot computed: {err}\n", {}
    match = MATCHING[config.matching][0]
    pair_rows = [row for group, a, b in pairs
                 for row in _pair_rows(group, views[a["run_id"]], views[b["run_id"]], match)]
    run_rows = [row for view in views.values() for row in _sensitivity_rows(view)]
    paths = {"similarity_csv": out_dir / "similarity.csv",
             "permutation_sensitivity_csv": out_dir / "permutation_sensitivity.csv"}
    write_csv(paths["similarity_csv"], pair_rows, _PAIR_COLUMNS)
    write_csv(paths["permutation_sensitivity_csv"], run_rows, _RUN_COLUMNS)
    samples = "/".join(str(n) for n in sorted({v.n_samples for v in views.values()}))
    note = _layer_note(views.values())
    unweighted = [run_id for run_id, present in weighted.items() if not present]
    if unweighted:  # save_weights: false, or a file gone: said, not silently fewer pairs
        note += (f" {len(unweighted)} completed run(s) have no weights.safetensors and are left out: "
                 f"{', '.join(unweighted)}.")
    if any(not _same_inputs(views[a["run_id"]], views[b["run_id"]]) for _, a, b in pairs):
        note += (" CKA is – for pairs whose configs test on different samples (another dataset, options or test "
                 "split): it compares two networks' responses to the same inputs.")
    return _markdown(pair_rows, run_rows, samples, note, config.matching), paths
