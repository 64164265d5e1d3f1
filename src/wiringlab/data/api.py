"""Public entry points: :func:`load_dataset`, :func:`list_datasets`, :func:`describe_dataset`, :func:`fetch_dataset`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from . import registry, sources
from .dataset import Dataset
from .errors import DatasetError, DatasetNotFoundError
from .spec import DatasetSpec, FileSpec, LoadContext
from .sources import FileCheck, Place

__all__ = ["load_dataset", "list_datasets", "describe_dataset", "fetch_dataset"]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike


def list_datasets() -> list[str]:
    """Return the registered dataset names.

    Returns:
        Names such as ``mnist1d``, ``fashion-mnist``, ``mnist``, ``cifar10``, ``imdb``, ``synthetic``.
    """
    return registry.dataset_names()


def _fix_hint(spec: DatasetSpec, offline_reason: str | None) -> str:
    fixes = [f"run `{spec.system_hint}`"] if spec.system_hint else []
    fixes.append(f"set {sources.DATA_ENV}=<dir containing {spec.name}/>")
    fixes.append("pass path=<folder with the files>")
    if offline_reason:
        fixes.append(f"allow downloads ({offline_reason})")
    return ", or ".join(fixes)


def _offline_reason(allow_download: bool | None) -> str:
    if allow_download is False:
        return "pass allow_download=True"
    return f"unset {sources.OFFLINE_ENV}"


def _not_found(
    spec: DatasetSpec, places: list[Place], checks: dict[Place, list[FileCheck]], reason: str
) -> DatasetNotFoundError:
    lines = [f"{spec.title} ({spec.name}) not found ({reason}). Looked in:"]
    for place in places:
        missing = [c.spec.name for c in checks[place] if c.status == "missing"]
        state = f"missing {', '.join(missing)}" if missing else "all files present"
        lines.append(f"  - {place.folder} ({place.label}): {state}")
    return DatasetNotFoundError("\n".join(lines))


def _find_local(spec: DatasetSpec, places: list[Place]) -> tuple[dict[str, FileCheck], dict[Place, list[FileCheck]]]:
    """Resolve each file at the first place holding it; a present file with a wrong hash raises."""
    found: dict[str, FileCheck] = {}
    seen: dict[Place, list[FileCheck]] = {}
    for place in places:
        seen[place] = []
        for fspec in spec.files:
            if fspec.role in found:
                continue
            check = sources.check_file(place.folder, fspec, keep_content=True)
            seen[place].append(check)
            if check.status == "ok":
                found[fspec.role] = check
            elif check.status != "missing":
                raise check.error()
    return found, seen


def _download_missing(spec: DatasetSpec, missing: list[FileSpec], downloader: Any) -> dict[str, FileCheck]:
    dest = sources.user_cache_dir() / spec.name
    result: dict[str, FileCheck] = {}
    for fspec in missing:
        try:
            path = sources.download_file(fspec, spec.mirrors, dest, downloader)
        except DatasetNotFoundError as exc:
            raise DatasetNotFoundError(f"{spec.title} ({spec.name}): {exc}. Or: {_fix_hint(spec, None)}") from exc
        check = sources.verify_path(path, fspec, keep_content=True)
        if check.status != "ok":  # registry content hash disagrees with its archive hash
            path.unlink(missing_ok=True)
            raise check.error()
        result[fspec.role] = check
    return result


def _obtain_files(
    spec: DatasetSpec, path: PathLike | None, allow_download: bool | None, downloader: Any
) -> tuple[dict[str, FileCheck], str]:
    places = sources.lookup_places(spec.name, path)
    found, seen = _find_local(spec, places)
    missing = [f for f in spec.files if f.role not in found]
    if missing and sources.is_offline(allow_download):
        reason = _offline_reason(allow_download)
        error = _not_found(spec, places, seen, "downloads are off")
        raise DatasetNotFoundError(f"{error}\nFix: {_fix_hint(spec, reason)}")
    if missing:
        logger.info("%s: downloading %s", spec.name, ", ".join(f.archive for f in missing))
        found.update(_download_missing(spec, missing, downloader))
    folders = dict.fromkeys(str(found[f.role].path.parent) for f in spec.files)
    return found, "; ".join(folders)


def load_dataset(
    name: str,
    *,
    path: PathLike | None = None,
    allow_download: bool | None = None,
    downloader: Any = None,
    **options: Any,
) -> Dataset:
    """Load a dataset by registry name.

    File-based datasets are looked for in: ``path`` (and ``path/<name>``) ->
    ``$WIRINGLAB_DATA/<name>`` -> system folders ``/usr/share/datasets/<name>`` -> user
    cache ``<cache>/<name>`` -> download into the user cache (unless offline). Every file
    is hash-checked. Generated datasets (``mnist1d``, ``synthetic``) never download;
    ``path`` is the folder mnist1d caches itself in (default ``<cache>/mnist1d``), and
    synthetic ignores it.

    Args:
        name: Registry name (see :func:`list_datasets`).
        path: Explicit folder holding the files.
        allow_download: True/False allow/forbid downloads; None follows ``$WIRINGLAB_OFFLINE``.
        downloader: pooch-style downloader ``(url, output_file, pooch, check_only=False)``.
        **options: Dataset options (e.g. ``seed`` for mnist1d, ``vocab_size`` for imdb).

    Returns:
        The :class:`Dataset`.

    Raises:
        UnknownDatasetError: Unknown name.
        DatasetOptionError: Unknown option or bad value.
        DatasetNotFoundError: Not found locally and not downloadable; says what to install or set.
        DataIntegrityError: A file's hash differs from the registry's.
        DataFormatError: A file's content is malformed.
    """
    spec = registry.get_spec(name)
    opts = registry.resolve_options(spec, options)
    if spec.generated:
        cache_dir = Path(path) if path is not None else sources.user_cache_dir() / spec.name
        ctx = LoadContext(spec, {}, opts, cache_dir, "generated")
    else:
        files, source = _obtain_files(spec, path, allow_download, downloader)
        ctx = LoadContext(spec, files, opts, sources.user_cache_dir() / spec.name, source)
    dataset = spec.loader(ctx)
    logger.info("loaded %r", dataset)
    return dataset


def fetch_dataset(name: str, *, downloader: Any = None) -> Path:
    """Make sure a dataset's files are where `load_dataset` finds them, downloading
    (hash-checked, into the user cache) only when no local place holds them all.

    Files already present in one place of the lookup order (``$WIRINGLAB_DATA``, the system
    folders such as ``/usr/share/datasets/<name>`` of a Debian package, the cache) are
    verified, not downloaded again, also offline. mnist1d is generated and cached instead.

    Args:
        name: Registry name.
        downloader: pooch-style downloader; default :class:`pooch.HTTPDownloader`.

    Returns:
        The folder that holds the files: the first local place holding them all, else the
        user cache.

    Raises:
        UnknownDatasetError: Unknown name.
        DatasetError: Offline (``$WIRINGLAB_OFFLINE``), or ``synthetic`` (nothing to fetch).
        DatasetNotFoundError: Every mirror failed.
        DataIntegrityError: A cached or downloaded file has the wrong hash.
    """
    spec = registry.get_spec(name)
    folder = sources.user_cache_dir() / spec.name
    if spec.generated:
        if not spec.cached:
            raise DatasetError(f"{spec.name} is generated in memory on each load; there is nothing to fetch")
        load_dataset(name)
        return folder
    local = _complete_local_folder(spec)
    if local is not None:
        logger.info("%s: every file is already in %s (hash ok); nothing to fetch", spec.name, local)
        return local
    checks = [sources.check_file(folder, f) for f in spec.files]
    bad = [c for c in checks if c.status not in ("ok", "missing")]
    if bad:
        raise bad[0].error()
    missing = [c.spec for c in checks if c.status == "missing"]
    if missing and sources.is_offline(None):
        raise DatasetError(f"cannot fetch {spec.name}: downloads are off ({sources.OFFLINE_ENV} is set); unset it")
    _download_missing(spec, missing, downloader)
    return folder


def _complete_local_folder(spec: DatasetSpec) -> Path | None:
    """The first place of the lookup order that holds every file of `spec` with the right
    hash, or None (a present file with a wrong hash raises, as in `load_dataset`)."""
    for place in sources.lookup_places(spec.name, None):
        checks = [sources.check_file(place.folder, f) for f in spec.files]
        bad = [c for c in checks if c.status not in ("ok", "missing")]
        if bad:
            raise bad[0].error()
        if all(c.status == "ok" for c in checks):
            return place.folder
    return None


def _describe_files(spec: DatasetSpec) -> list[str]:
    lines = ["Files (sha256 of the decompressed content; hash of the download):"]
    for f in spec.files:
        content = f"sha256:{f.sha256}" if f.sha256 else "content hash unknown: accepted only as the archive"
        lines.append(f"  {f.name}: {content}; download {f.archive} ({f.archive_hash or 'no archive hash'})")
    return lines


def _describe_places(spec: DatasetSpec, path: PathLike | None) -> list[str]:
    lines = ["Places looked, in order:"]
    places = sources.lookup_places(spec.name, path)
    if path is None:
        lines.append("  - explicit path: none given")
    if not os.environ.get(sources.DATA_ENV):
        lines.append(f"  - ${sources.DATA_ENV}: not set")
    for place in places:
        lines.append(f"  - {place.folder} ({place.label}):")
        for fspec in spec.files:
            lines.append(f"      {sources.check_file(place.folder, fspec).describe()}")
    offline = sources.is_offline(None)
    state = f"off ({sources.OFFLINE_ENV} is set)" if offline else "allowed, into the user cache"
    lines.append(f"  - download: {state}; mirrors: {', '.join(spec.mirrors) or 'none'}")
    return lines


def describe_dataset(name: str, path: PathLike | None = None) -> str:
    """Describe a dataset: expected files, each place looked (in lookup order) and what is there, citation.

    Args:
        name: Registry name.
        path: Explicit folder, as for :func:`load_dataset`.

    Returns:
        Human-readable text (hashes every file present, so it may take a second).

    Raises:
        UnknownDatasetError: Unknown name.
    """
    spec = registry.get_spec(name)
    lines = [f"{spec.name}: {spec.title}"]
    if spec.options:
        lines.append("Options: " + ", ".join(f"{k}={v!r}" for k, v in spec.options.items()))
    if spec.generated:
        lines.append(f"Generated in code; never downloaded. Cache folder: {sources.user_cache_dir() / spec.name}")
    else:
        lines += _describe_files(spec) + _describe_places(spec, path)
        if sources.is_offline(None):
            lines.append(f"If missing: {_fix_hint(spec, 'unset ' + sources.OFFLINE_ENV)}")
        else:
            lines.append(f"If missing: {_fix_hint(spec, None)}, or run `wiringlab datasets fetch {spec.name}`")
    lines.append(f"Citation: {spec.citation}")
    return "\n".join(lines)
