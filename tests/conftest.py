"""Test-wide settings: never download, keep caches in a temporary folder, small threads."""

import os

import pytest
import torch


def pytest_configure(config):
    os.environ["WIRINGLAB_OFFLINE"] = "1"
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Each test session gets its own dataset cache (the user's is never touched)."""
    cache = tmp_path_factory.mktemp("wiringlab-cache")
    old = os.environ.get("WIRINGLAB_CACHE")
    os.environ["WIRINGLAB_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("WIRINGLAB_CACHE", None)
    else:
        os.environ["WIRINGLAB_CACHE"] = old


def needs(resource: str, present: bool, reason: str):
    """Skip where an optional `resource` is absent, unless WIRINGLAB_REQUIRE (comma-separated)
    names it: `.ci/run` does for what it installs, so a failed install fails those tests
    instead of skipping them silently."""
    required = resource in os.environ.get("WIRINGLAB_REQUIRE", "").split(",")
    return pytest.mark.skipif(not present and not required, reason=reason)


FASHION_DIR = "/usr/share/datasets/fashion-mnist"
needs_fashion = needs("fashion-mnist", os.path.isdir(FASHION_DIR),
                      "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="session")
def quickstart_folder(tmp_path_factory):
    """The quickstart recipe as a user runs it, shortened (2 epochs, seeds 0 1): run once per
    session and shared; returns (results folder, what the command printed). Read-only:
    copy it before changing anything."""
    import contextlib
    import io
    from pathlib import Path

    from wiringlab.cli import main

    out = tmp_path_factory.mktemp("quickstart") / "quickstart"
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", str(recipe), "--out", str(out), "--epochs", "2", "--seeds", "0", "1",
                     "--set", "train.progress=false"])
    assert code == 0, printed.getvalue()
    return out, printed.getvalue()
