"""The `wiringlab` command: thin argument parsing over experiment, report and data."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("wiringlab")


def _parse_seeds(values: list[str] | None) -> list[int] | None:
    from .experiment import ConfigError

    if not values:
        return None
    texts = [s.strip() for v in values for s in v.split(",") if s.strip()]
    bad = [t for t in texts if not t.lstrip("-").isdigit()]
    if bad:
        raise ConfigError(f"--seeds: {', '.join(map(repr, bad))} is not an integer; "
                          "e.g. --seeds 0 1 2 or --seeds 0,1,2")
    return [int(t) for t in texts]


def _positive_int(text: str) -> int:
    """argparse type of --workers: 0 or a negative count is an error, not one process."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of processes: give 1 or more")
    return value


def _run_overrides(args) -> list[tuple[str, object]]:
    from .experiment import parse_override

    overrides = [parse_override(text) for text in args.set or []]
    if args.epochs is not None:
        overrides.append(("train.epochs", args.epochs))
    if args.device is not None:
        overrides.append(("train.device", args.device))
    if args.tensorboard:
        overrides.append(("train.tensorboard", True))
    if args.precision is not None:
        overrides.append(("train.precision", args.precision))
    if args.compile is not None:
        overrides.append(("train.compile", args.compile))
    return overrides


def _cmd_run(args) -> int:
    from .experiment import expand, load_recipe, run_sweep
    from .experiment.executors import make_executor
    from .report import build_report

    if args.tensorboard:
        from .experiment.tensorboard import require_tensorboard

        require_tensorboard()
    executor = make_executor(args.executor, workers=args.workers, address=args.address,
                             gpus_per_task=args.gpus_per_task)
    recipe = load_recipe(args.recipe)
    overrides = _run_overrides(args)
    specs = expand(recipe, str(args.recipe), overrides, _parse_seeds(args.seeds))
    out_dir = Path(args.out) if args.out else Path("runs") / recipe.name
    if args.dry_run:
        from .experiment.store import RunFolder
        from .experiment.sweep import adoptable_runs, check_same_recipe

        check_same_recipe(recipe, out_dir)  # what the run would refuse, the dry run refuses
        adoptable = adoptable_runs(specs, out_dir)
        for s in specs:
            done = s.run_id in adoptable or RunFolder(out_dir / "runs" / s.run_id).finished()
            found = f"  (finished as {adoptable[s.run_id].name})" if s.run_id in adoptable else ""
            print(f"{'done ' if done else 'todo '} {s.run_id}  [{s.label}] seed={s.seed}{found}")
        print(f"{len(specs)} runs -> {out_dir}")
        return 0
    paths = {}  # filled by the report, built under the folder's lock
    result = run_sweep(recipe, specs, out_dir, executor=executor, workers=args.workers, overrides=overrides,
                       stack=not args.no_stack, then=lambda folder: paths.update(build_report(folder)))
    failed = [s for s in result.summaries if s["status"] == "failed"]
    diverged = sum(s["status"] == "diverged" for s in result.summaries)
    print(f"{len(result.executed)} runs trained, {len(result.skipped)} already finished, "
          f"{diverged} diverged, {len(failed)} failed -> {out_dir}")
    print(paths["table"].read_text())
    for s in failed:
        print(f"failed: {s['run_id']}: {s.get('error')}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_report(args) -> int:
    from .report import build_report

    paths = build_report(Path(args.dir))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_compare(args) -> int:
    from .report.compare import load_folders, render_comparison, write_comparison

    if args.out and Path(args.out).suffix.lower() not in (".md", ".html", ".htm"):
        print(f"error: --out {args.out}: use a .md or .html file name", file=sys.stderr)
        return 2
    markdown = render_comparison(load_folders([Path(d) for d in args.dirs]), args.metric)
    print(markdown)
    if args.out:
        print(f"written: {write_comparison(Path(args.out), markdown)}")
    return 0


def _cmd_datasets(args) -> int:
    from . import data

    if args.action == "list":
        for name in data.list_datasets():
            print(name)
    elif args.action == "info":
        print(data.describe_dataset(args.name, path=args.path))
    elif args.action == "fetch":
        if args.path is not None:  # fetch fills the user cache; a folder of one's own is read, not filled
            from .data.sources import user_cache_dir

            raise data.DatasetError(f"datasets fetch takes no --path: it downloads into the user cache "
                                    f"({user_cache_dir()}); to check a folder of your own, run "
                                    f"`wiringlab datasets info {args.name} --path {args.path}`")
        print(data.fetch_dataset(args.name))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wiringlab", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a recipe (grid of configs x seeds) into a results folder")
    run.add_argument("recipe", type=Path, help="a recipe YAML file, e.g. recipes/quickstart.yaml")
    run.add_argument("--out", help="results folder (default: runs/<recipe name>)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config key for every run, e.g. --set data.name=fashion-mnist")
    run.add_argument("--seeds", nargs="+", help="seeds to run instead of the recipe's, e.g. 0 1 2 or 0,1,2")
    run.add_argument("--epochs", type=int, help="shorthand for --set train.epochs=N")
    run.add_argument("--device", help="shorthand for --set train.device=DEVICE (auto, cpu, cuda)")
    run.add_argument("--workers", type=_positive_int, default=1,
                     help="processes to spread runs over (one thread each); with --executor ray and no "
                          "--address, the CPUs of the local Ray cluster")
    run.add_argument("--executor", default="auto", choices=["auto", "inprocess", "pool", "ray"],
                     help="where runs execute: auto (in-process, or a process pool with --workers > 1), "
                          "inprocess, pool, or ray (pip install 'wiringlab[ray]')")
    run.add_argument("--address", help="Ray cluster to join, e.g. HEAD_IP:6379 (default: start a local one)")
    run.add_argument("--gpus-per-task", type=float, default=0.25,
                     help="GPU share of each Ray task (one run, or one stack of compatible runs) when the "
                          "cluster has GPUs (default 0.25: 4 tasks per GPU)")
    run.add_argument("--precision", choices=["fp32", "bf16"],
                     help="shorthand for --set train.precision=...; bf16 autocast is opt-in, for speed, "
                          "and changes the numbers (recorded in config and provenance)")
    run.add_argument("--compile", nargs="?", const="default",
                     choices=["off", "default", "reduce-overhead", "max-autotune"],
                     help="torch.compile the model with this mode (default: default; reduce-overhead = "
                          "CUDA graphs, for GPUs); opt-in, recorded in config and provenance")
    run.add_argument("--tensorboard", action="store_true",
                     help="also log per-epoch metrics to runs/<id>/tensorboard/ (pip install 'wiringlab[tensorboard]')")
    run.add_argument("--no-stack", action="store_true",
                     help="train every run alone instead of stacking compatible runs into one model")
    run.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done; train nothing")
    run.set_defaults(func=_cmd_run)

    report = sub.add_parser("report", help="rebuild summary.csv, table.md, figures and report.html of a results folder")
    report.add_argument("dir", help="a results folder, e.g. runs/quickstart")
    report.set_defaults(func=_cmd_report)

    compare = sub.add_parser("compare", help="the same metrics of several results folders side by side")
    compare.add_argument("dirs", nargs="+", metavar="DIR", help="results folders, e.g. runs/a runs/b")
    compare.add_argument("--out", help="also write the comparison to FILE (.md or .html)")
    compare.add_argument("--metric", action="append", help="metric to show (repeatable; default: all)")
    compare.set_defaults(func=_cmd_compare)

    datasets = sub.add_parser("datasets", help="list, inspect or fetch datasets")
    datasets.add_argument("action", choices=["list", "info", "fetch"])
    datasets.add_argument("name", nargs="?", help="dataset name (info, fetch)")
    datasets.add_argument("--path", help="explicit folder to look in first (info)")
    datasets.set_defaults(func=_cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "datasets" and args.action != "list" and not args.name:
        parser.error(f"datasets {args.action} needs a dataset NAME")
    if args.command == "compare" and len(args.dirs) < 2:
        parser.error("compare needs at least two results folders")
    if args.command == "run" and args.address and args.executor != "ray":
        parser.error("--address is a Ray cluster's address; add --executor ray")
    from .data import DatasetError
    from .experiment import ConfigError
    from .experiment.errors import FolderBusyError, MissingExtraError
    from .report.errors import ReportError

    try:
        return args.func(args)
    except (ConfigError, DatasetError, FileNotFoundError, FolderBusyError, MissingExtraError, ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = " (finished runs are kept: run the same command again to resume)" if args.command == "run" else ""
        print(f"\ninterrupted{resume}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `wiringlab run ... --dry-run | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141


if __name__ == "__main__":
    sys.exit(main())
