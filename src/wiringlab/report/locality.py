"""Report section for the locality prior: spatial clustering, treatment vs control.

Pairs the configs of a results folder whose model has a `prior_block`: a *treatment*
(block layer a prior, e.g. `locality`) with the *control* whose config is identical but
for the block layer being plain `linear` (seed aside). For each pair it rebuilds every
completed network from its run folder (`execute.build_run_model` + ``weights.safetensors``),
runs the first `MAX_TEST_IMAGES` test images of the run's dataset through it (normalised
as in training), and takes the prior block's input and output activations. Then
(`wiringlab.analysis.clustering` defines every statistic):

- per seed: Welch's t-test of per-image spatial variance of the block's output, treatment
  vs control network of that seed, over the test images, and the class driving it;
- across seeds: Welch's t-test of the per-network mean variance (n = networks);
- figures: ``locality_prior.png`` (the prior of a centre and a corner output unit over the
  input grid), ``locality_maps_<pair>.png`` (class-mean maps, raw and centered, input and
  output of the block, control and treatment of the first common seed) and
  ``locality_variance.png`` (per-class variance bars with the tests).

Returns ("", {}) for a folder without such a pair.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import ValidationError

from ..analysis.clustering import class_variances, compare_over_images, module_io, spatial_variance, welch_t_test
from ..engine import to_device_data
from ..engine.tensors import capped_to_dataset
from ..experiment.config import RunConfig
from ..experiment.execute import DatasetCache, build_run_model
from ..experiment.store import RunFolder
from ..models import prior_block
from .locality_figures import plot_class_maps, plot_priors, plot_variance_bars
from .table import format_p, group_by_label

__all__ = ["locality_section", "pair_runs", "network_activations", "MAX_TEST_IMAGES"]

log = logging.getLogger(__name__)

MAX_TEST_IMAGES = 2000  # the first this-many test images of a run's dataset (bounded report time)


@dataclass
class Pair:
    """A treatment config and its control: label and [(summary, config)] of completed runs."""

    treatment: str
    control: str
    treatment_runs: list = field(default_factory=list)
    control_runs: list = field(default_factory=list)


def _config(out_dir: Path, run: dict) -> RunConfig | None:
    """The run's stored config, or None (logged) if this version no longer accepts it."""
    try:
        return RunConfig.model_validate(RunFolder(out_dir / "runs" / run["run_id"]).read_config())
    except ValidationError as err:
        log.warning("run %s left out of the locality analysis: its config.yaml is not valid now: %s",
                    run["run_id"], err)
        return None


def _pair_key(config: RunConfig) -> str:
    """The config with its seed and presentation dropped and the block layer made plain."""
    tree = config.model_dump(mode="json")
    for key in ("seed", "save_weights"):
        tree.pop(key)
    tree["train"].pop("progress")
    tree["model"]["prior_block"]["layer"] = {"type": "linear"}
    return json.dumps(tree, sort_keys=True)


def pair_runs(out_dir: Path, summaries: list[dict]) -> list[Pair]:
    """Treatment/control pairs of the folder's completed runs that saved weights."""
    treatments, controls = {}, {}
    for label, runs in group_by_label(summaries).items():
        runs = [r for r in runs if r.get("status") == "completed" and not r.get("multitask")
                and (out_dir / "runs" / r["run_id"] / "weights.safetensors").exists()]
        configs = [(r, _config(out_dir, r)) for r in runs]
        configs = [(r, c) for r, c in configs
                   if c is not None and getattr(c.model, "prior_block", None) is not None]
        if not configs:
            continue
        key = _pair_key(configs[0][1])
        kind = configs[0][1].model.prior_block.layer.type
        (controls if kind == "linear" else treatments).setdefault(key, []).append((label, configs))
    pairs = []
    for key, labelled in treatments.items():
        for label, runs in labelled:
            for control_label, control_runs in controls.get(key, [])[:1]:
                pairs.append(Pair(label, control_label, runs, control_runs))
    return pairs


@torch.no_grad()
def network_activations(out_dir: Path, run: dict, config: RunConfig, data) -> dict:
    """Rebuild one run's model and return its prior layer and block activations on ``data``'s test
    images: {"layer", "input" (N, n_in), "output" (N, width), "labels" (N,)}."""
    model = build_run_model(config, data.input_shape, data.num_classes, torch.device("cpu"), dense=True)
    model.load_state_dict(RunFolder(out_dir / "runs" / run["run_id"]).read_weights())
    block = prior_block(model)
    inputs, outputs = module_io(model, block, data.x_test)
    return {"layer": block[0], "input": inputs, "output": outputs, "labels": data.y_test.cpu()}


def _test_data(config: RunConfig, datasets: DatasetCache):
    dataset = datasets.get(config.data)
    data_cfg = capped_to_dataset(config.data, dataset)
    n_test = min(data_cfg.n_test or MAX_TEST_IMAGES, MAX_TEST_IMAGES, len(dataset.x_test))
    return to_device_data(dataset, data_cfg.model_copy(update={"n_test": n_test}), torch.device("cpu"))


def _analyse(out_dir: Path, runs: list, datasets: DatasetCache) -> dict[int, dict]:
    """Per seed: activations, per-image output variance and class variances of one network."""
    networks = {}
    for run, config in runs:
        data = _test_data(config, datasets)
        net = network_activations(out_dir, run, config, data)
        net["num_classes"] = data.num_classes
        net["variance"] = spatial_variance(net["output"])  # (N,), cells²
        net["class_variance"] = torch.stack([
            torch.stack([net["variance"][net["labels"] == c].nanmean() for c in range(data.num_classes)]),
            class_variances(net["output"], net["labels"], data.num_classes, centered=True),
        ])  # (2, C): mean per-image variance per class; centered class-mean map variance
        networks[run["seed"]] = net
    return networks


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x != x else f"{x:.{digits}g}"


def _p_is(p: float | None) -> str:
    """"p=0.03", or "p < 1e-300" (format_p's bound already carries its relation)."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p={text}"


def _pair_markdown(pair: Pair, treated: dict, control: dict) -> tuple[str, list]:
    lines = [f"\n### `{pair.treatment}` vs `{pair.control}`\n",
             "| seed | V treatment | V control | Welch t | p | driving class (t, p) |", "|---|---|---|---|---|---|"]
    seed_tests = []
    for seed in sorted(set(treated) & set(control)):
        a, b = treated[seed], control[seed]
        test = compare_over_images(a["variance"], a["labels"], b["variance"], b["labels"], a["num_classes"])
        seed_tests.append(test)
        o = test.overall
        driver = "–" if test.driver is None else (
            f"{test.driver} (t={_fmt(test.per_class[test.driver].statistic)}, "
            f"{_p_is(test.per_class[test.driver].p)})")
        lines.append(f"| {seed} | {_fmt(o.mean_a, 4)} | {_fmt(o.mean_b, 4)} | {_fmt(o.statistic)} | {format_p(o.p)} "
                     f"| {driver} |")
    across = welch_t_test([float(n["variance"].nanmean()) for n in treated.values()],
                          [float(n["variance"].nanmean()) for n in control.values()])
    lines.append(f"| across seeds (n={across.n_a} vs {across.n_b}) | {_fmt(across.mean_a, 4)} | "
                 f"{_fmt(across.mean_b, 4)} | {_fmt(across.statistic)} | {format_p(across.p)} | – |")
    centered = [float(torch.stack([n["class_variance"][1].nanmean() for n in nets.values()]).nanmean())
                for nets in (treated, control)]
    lines.append(f"\nCentered class-mean map variance (mean over classes, then over networks): "
                 f"treatment {_fmt(centered[0], 4)}, control {_fmt(centered[1], 4)}.\n")
    return "\n".join(lines), [seed_tests, across]


_HEADER = (
    "\n## Locality prior: spatial clustering of activations\n\n"
    "Each network rebuilt from its run folder and run on the first {n_images} test images. "
    "V: spatial variance (cells²) of each image's activation map at the output of the prior block "
    "(linear → BN → activation) on its most-square grid — mass = positive part of the activations, "
    "normalised to sum 1, V = Σ m ‖pos − centroid‖²; lower = more clustered (definitions: "
    "`wiringlab.analysis.clustering`). Per seed: Welch's t-test of per-image V, treatment vs control "
    "network of that seed, over the test images; the driving class is the one whose own test has the "
    "largest |t| in the direction of the overall difference. Across seeds: Welch's t-test of the "
    "per-network mean V (n = networks). Figures: `figures/locality_prior.png`, `figures/locality_maps_*.png`, "
    "`figures/locality_variance.png`.\n")


def _figures(figures_dir: Path, analysed: list) -> dict[str, Path]:
    priors = [(pair.treatment, next(iter(treated.values()))["layer"]) for pair, treated, _, _ in analysed]
    priors = [(label, layer) for label, layer in priors if getattr(layer, "kernel", None) is not None]  # sparse: none
    figures = {"locality_variance": plot_variance_bars(analysed, figures_dir / "locality_variance.png")}
    if priors:
        figures["locality_prior"] = plot_priors(priors, figures_dir / "locality_prior.png")
    for index, (pair, treated, control, _) in enumerate(analysed):
        seed = min(set(treated) & set(control), default=None)
        if seed is not None:
            figures[f"locality_maps_{index}"] = plot_class_maps(
                pair, control[seed], treated[seed], seed, figures_dir / f"locality_maps_{index}.png")
    return figures


def locality_section(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    out_dir = Path(out_dir)
    pairs = pair_runs(out_dir, summaries)
    if not pairs:
        return "", {}
    datasets, by_label, analysed, parts = DatasetCache(), {}, [], []
    for pair in pairs:
        for label, runs in ((pair.treatment, pair.treatment_runs), (pair.control, pair.control_runs)):
            if label not in by_label:  # a control shared by several treatments is analysed once
                by_label[label] = _analyse(out_dir, runs, datasets)
        treated, control = by_label[pair.treatment], by_label[pair.control]
        markdown, tests = _pair_markdown(pair, treated, control)
        parts.append(markdown)
        analysed.append((pair, treated, control, tests))
    n_images = len(next(iter(analysed[0][1].values()))["labels"])
    return _HEADER.format(n_images=n_images) + "".join(parts), _figures(out_dir / "figures", analysed)
