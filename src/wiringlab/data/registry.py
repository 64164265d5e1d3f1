"""The dataset registry: one :class:`DatasetSpec` per name.

Hashes. ``FileSpec.sha256`` is the sha256 of a file's *decompressed* content, so a local
copy is accepted whether it is gzip-compressed or not, and whoever compressed it (Debian
recompresses Fashion-MNIST, so its ``.gz`` files differ from the originals byte for byte).
``FileSpec.archive_hash`` is the published hash of the file as downloaded (md5, as
torchvision/torchtext list them), checked before anything is opened.

Where the decompressed hash is unknown (``sha256=None``: the CIFAR-10 and IMDB archives,
whose members' sha256 values are not published), a local file is accepted only as the
archive itself, checked against ``archive_hash``; extracted members are not accepted.

Sources of the values: Fashion-MNIST content hashes were computed on Debian's
``dataset-fashion-mnist`` files; MNIST content hashes are the sha256 values of the
decompressed IDX files as listed in many independent projects; archive md5 values are
torchvision's (MNIST, Fashion-MNIST, CIFAR-10) and torchtext's (IMDB), which match the
datasets' own pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .errors import DatasetOptionError, UnknownDatasetError
from .generated import load_mnist1d, load_synthetic
from .loaders import load_cifar10, load_idx, load_imdb
from .spec import DatasetSpec, FileSpec

__all__ = ["REGISTRY", "get_spec", "dataset_names", "resolve_options", "idx_files"]

_IDX_ROLES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_files(hashes: Mapping[str, tuple[str | None, str | None]]) -> tuple[FileSpec, ...]:
    """Build the four MNIST-style file specs (downloaded as ``<name>.gz``).

    Args:
        hashes: Role -> (sha256 of the decompressed file, archive hash of the ``.gz``).

    Returns:
        The file specs, train images/labels then test images/labels.
    """
    return tuple(
        FileSpec(role, name, hashes[role][0], f"{name}.gz", hashes[role][1]) for role, name in _IDX_ROLES.items()
    )


_DIGITS = tuple(str(i) for i in range(10))

MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    files=idx_files(
        {
            "train_images": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            "train_labels": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "md5:d53e105ee54ea40749a09fcbcd1e9432",
            ),
            "test_images": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "md5:9fb629c4189551a2d022fa330f9573f3",
            ),
            "test_labels": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                "md5:ec29112dd5afa0611ce80d1b7f02629c",
            ),
        }
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    loader=load_idx,
    classes=_DIGITS,
    citation=(
        "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to "
        "document recognition. Proceedings of the IEEE 86(11):2278-2324, 1998."
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files=idx_files(
        {
            "train_images": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            "train_labels": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "md5:25c81989df183df01b3e8a0aad5dffbe",
            ),
            "test_images": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "md5:bef4ecab320f06d8554ea6380940ec79",
            ),
            "test_labels": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                "md5:bb300cfdad3c16e7a12a480ee83cd310",
            ),
        }
    ),
    mirrors=(
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    loader=load_idx,
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    citation=(
        "H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking "
        "Machine Learning Algorithms. arXiv:1708.07747, 2017."
    ),
    system_hint="apt-get install dataset-fashion-mnist",
)

CIFAR10 = DatasetSpec(
    name="cifar10",
    title="CIFAR-10",
    # Member hashes unknown: accepted only as the md5-checked archive (see module docstring).
    files=(
        FileSpec(
            "archive", "cifar-10-binary.tar.gz", None, "cifar-10-binary.tar.gz", "md5:c32a1d4ab5d03f1284b67883e8d87530"
        ),
    ),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    loader=load_cifar10,
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    citation=(
        "A. Krizhevsky. Learning Multiple Layers of Features from Tiny Images. "
        "Technical report, University of Toronto, 2009."
    ),
)

IMDB = DatasetSpec(
    name="imdb",
    title="IMDB Large Movie Review Dataset",
    # Member hashes unknown: accepted only as the md5-checked archive (see module docstring).
    files=(
        FileSpec("archive", "aclImdb_v1.tar.gz", None, "aclImdb_v1.tar.gz", "md5:7c2ac02c03563afcf9b574c7e56c153a"),
    ),
    mirrors=("https://ai.stanford.edu/~amaas/data/sentiment/",),
    loader=load_imdb,
    classes=("negative", "positive"),
    citation=(
        "A. L. Maas, R. E. Daly, P. T. Pham, D. Huang, A. Y. Ng, C. Potts. Learning Word Vectors "
        "for Sentiment Analysis. ACL 2011, pp. 142-150."
    ),
    options={"vocab_size": 5000, "binary": True},
)

MNIST1D = DatasetSpec(
    name="mnist1d",
    title="MNIST-1D",
    files=(),
    mirrors=(),
    loader=load_mnist1d,
    classes=_DIGITS,
    citation="S. Greydanus, D. Kobak. Scaling Down Deep Learning with MNIST-1D. ICML 2024 (arXiv:2011.14439).",
    options={"seed": 42},
    cached=True,
)

SYNTHETIC = DatasetSpec(
    name="synthetic",
    title="Synthetic prototypes",
    files=(),
    mirrors=(),
    loader=load_synthetic,
    classes=_DIGITS,
    citation="Generated by wiringlab (class prototypes plus Gaussian noise); no citation needed.",
    options={"n_train": 2048, "n_test": 512, "input_shape": (1, 28, 28), "num_classes": 10, "seed": 0, "noise": 4.0},
)

#: Name -> spec. Read at call time, so tests may replace it with ``monkeypatch.setattr``.
REGISTRY: Mapping[str, DatasetSpec] = MappingProxyType(
    {spec.name: spec for spec in (MNIST1D, FASHION_MNIST, MNIST, CIFAR10, IMDB, SYNTHETIC)}
)


def dataset_names(registry: Mapping[str, DatasetSpec] | None = None) -> list[str]:
    """Return the registered names, in registry order.

    Args:
        registry: Registry to read (default :data:`REGISTRY`).

    Returns:
        The names.
    """
    return list(REGISTRY if registry is None else registry)


def get_spec(name: str, registry: Mapping[str, DatasetSpec] | None = None) -> DatasetSpec:
    """Look a dataset up by name.

    Args:
        name: Registry name.
        registry: Registry to read (default :data:`REGISTRY`).

    Returns:
        Its spec.

    Raises:
        UnknownDatasetError: Unknown name; the message lists the known ones.
    """
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(registry)}")
    return registry[name]


def resolve_options(spec: DatasetSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """Merge given options over the spec's defaults.

    Args:
        spec: The dataset.
        options: Options given by the caller.

    Returns:
        All options with defaults filled in.

    Raises:
        DatasetOptionError: An option the dataset does not have; the message names the allowed ones.
    """
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(f"{k} (default {v!r})" for k, v in spec.options.items()) or "none"
        hint = " (split sizes are not dataset options: set data.n_train / data.n_test)" \
            if set(unknown) & {"n_train", "n_test"} else ""
        raise DatasetOptionError(
            f"dataset {spec.name!r} has no option {', '.join(unknown)}; allowed options: {allowed}{hint}"
        )
    return {**spec.options, **options}
