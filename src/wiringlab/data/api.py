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
    fixes.append("pass path=<folder with the files> (data.path in a recipe; --set data.path=DIR on the command line)")
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
    names = "; ".join(" or ".join(f.candidates) for f in spec.files)
    lines.append(f"Each folder must hold these files directly (not in a sub-folder), under these names: {names}")
    return DatasetNotFoundError("\n".join(lines))


def _find_local(spec: DatasetSpec, places: list[Place], keep_content: bool = True, repair_cache: bool = False,
                ) -> tuple[dict[str, FileCheck], dict[Place, list[FileCheck]]]:
    """Resolve each file at the first place holding it; a present file with a wrong hash
    raises, unless it is in the user cache and `repair_cache` (then it is deleted, to be
    downloaded again: the cache holds only our own downloads)."""
    found: dict[str, FileCheck] = {}
    seen: dict[Place, list[FileCheck]] = {}
    for place in places:
        seen[place] = []
        if place.label == "user cache" and place.folder.is_dir():
            sources.remove_stale_downloads(place.folder)  # a killed download's partial file, at once
        for fspec in spec.files:
            if fspec.role in found:
                continue
            check = sources.check_file(place.folder, fspec, keep_content=keep_content)
            seen[place].append(check)
            if check.status == "ok":
                found[fspec.role] = check
            elif check.status != "missing" and repair_cache and place.label == "user cache":
                logger.warning("%s: %s; deleting it to download it again", spec.name, check.describe())
                _delete_from_cache(check.path)
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


def _delete_from_cache(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        raise DatasetError(f"cannot delete {path} from the user cache to download it again ({exc}); delete it "
                           f"yourself, or set {sources.CACHE_ENV} to a writable folder") from exc


def _no_such_folder(path: PathLike | None) -> bool:
    return path is not None and not Path(path).expanduser().is_dir()


def _missing_folder_text(path: PathLike) -> str:
    """How a `path` that is not a folder is described: a file given for its folder is said so."""
    return "is a file, not the folder that holds the files" if Path(path).expanduser().is_file() else "does not exist"


def _check_explicit_path(spec: DatasetSpec, path: PathLike | None) -> None:
    """An explicit folder that does not exist is a mistake (a typo, an unmounted disk), not a
    reason to look elsewhere quietly."""
    if _no_such_folder(path):
        raise DatasetNotFoundError(f"{spec.title} ({spec.name}): the folder given as path, {path}, "
                                   f"{_missing_folder_text(path)}; "
                                   f"give the folder that holds the files (or <it>/{spec.name}/), or no path to use "
                                   f"the lookup order (run `wiringlab datasets info {spec.name}`)")


def _obtain_files(
    spec: DatasetSpec, path: PathLike | None, allow_download: bool | None, downloader: Any
) -> tuple[dict[str, FileCheck], str]:
    _check_explicit_path(spec, path)
    places = sources.lookup_places(spec.name, path)
    found, seen = _find_local(spec, places)
    missing = [f for f in spec.files if f.role not in found]
    if missing and sources.is_offline(allow_download):
        reason = _offline_reason(allow_download)
        error = _not_found(spec, places, seen, "downloads are off")
        raise DatasetNotFoundError(f"{error}\nFix: {_fix_hint(spec, reason)}")
    if missing:
        logger.info("%s: downloading %s", spec.name, ", ".join(f.archive for f in missing))
        try:
            found.update(_download_missing(spec, missing, downloader))
        except DatasetNotFoundError as exc:  # say where it looked: a mislaid folder shows up as a network error
            raise DatasetNotFoundError(f"{_not_found(spec, places, seen, 'no local copy; download failed')}\n"
                                       f"{exc}") from exc
    folders = list(dict.fromkeys(str(found[f.role].path.parent) for f in spec.files))
    explicit = {str(place.folder) for place in places if place.label == "explicit path"}
    if explicit and not set(folders) <= explicit:
        logger.warning("%s: the path given (%s) lacks some files; they were found in %s (hash-checked: the same "
                       "content)", spec.name, path, "; ".join(f for f in folders if f not in explicit))
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
        cache_dir = Path(path).expanduser() if path is not None else sources.user_cache_dir() / spec.name
        ctx = LoadContext(spec, {}, opts, cache_dir, "generated")
    else:
        files, source = _obtain_files(spec, path, allow_download, downloader)
        ctx = LoadContext(spec, files, opts, sources.user_cache_dir() / spec.name, source)
    dataset = spec.loader(ctx)
    logger.info("loaded %r", dataset)
    return dataset


def fetch_dataset(name: str, *, downloader: Any = None) -> Path:
    """Make sure a dataset's files are where `load_dataset` finds them, downloading
    (hash-checked, into the user cache) only the files no local place holds.

    Files already present in the lookup order (``$WIRINGLAB_DATA``, the system folders such
    as ``/usr/share/datasets/<name>`` of a Debian package, the cache), each resolved on its
    own as `load_dataset` does, are verified, not downloaded again, also offline. A corrupted
    file in the user cache is deleted and downloaded again (when downloads are allowed).
    mnist1d is generated and cached instead.

    Args:
        name: Registry name.
        downloader: pooch-style downloader; default :class:`pooch.HTTPDownloader`.

    Returns:
        The folder that holds the (first) files: a local place, else the user cache.

    Raises:
        UnknownDatasetError: Unknown name.
        DatasetError: Offline (``$WIRINGLAB_OFFLINE``), or ``synthetic`` (nothing to fetch).
        DatasetNotFoundError: Every mirror failed.
        DataIntegrityError: A local file (a cached one only offline) or a download has the wrong hash.
    """
    spec = registry.get_spec(name)
    folder = sources.user_cache_dir() / spec.name
    if spec.generated:
        if not spec.cached:
            raise DatasetError(f"{spec.name} is generated in memory on each load; there is nothing to fetch")
        load_dataset(name)
        return folder
    offline = sources.is_offline(None)
    found, _ = _find_local(spec, sources.lookup_places(spec.name, None), keep_content=False, repair_cache=not offline)
    missing = [f for f in spec.files if f.role not in found]
    if not missing:
        folders = list(dict.fromkeys(found[f.role].path.parent for f in spec.files))
        logger.info("%s: every file is already in %s (hash ok); nothing to fetch", spec.name,
                    "; ".join(map(str, folders)))
        return folders[0]
    if offline:
        raise DatasetError(f"cannot fetch {spec.name}: downloads are off ({sources.OFFLINE_ENV} is set); unset it")
    _download_missing(spec, missing, downloader)
    return folder


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
    elif _no_such_folder(path):
        lines.append(f"  - explicit path {path}: {_missing_folder_text(path)} (loading with it fails)")
    if not os.environ.get(sources.DATA_ENV):
        lines.append(f"  - ${sources.DATA_ENV}: not set")
    checks = {place: [sources.check_file(place.folder, fspec) for fspec in spec.files] for place in places}
    for place in places:
        lines.append(f"  - {place.folder} ({place.label}):")
        lines += [f"      {check.describe()}" for check in checks[place]]
    offline = sources.is_offline(None)
    state = f"off ({sources.OFFLINE_ENV} is set)" if offline else "allowed, into the user cache"
    lines.append(f"  - download: {state}; mirrors: {', '.join(spec.mirrors) or 'none'}")
    if _no_such_folder(path):
        return lines + [f"Loading now fails: the folder given as path, {path}, {_missing_folder_text(path)}"]
    return lines + [_load_outcome(spec, places, checks, offline)]


def _load_outcome(spec: DatasetSpec, places: list[Place], checks: dict[Place, list[FileCheck]],
                  offline: bool) -> str:
    """What `load_dataset` would do with these places, as `_find_local` resolves them."""
    used, to_download = [], []
    for index, fspec in enumerate(spec.files):
        for place in places:
            check = checks[place][index]
            if check.status == "ok":
                used.append(str(check.path.parent))
                break
            if check.status != "missing":
                return f"Loading now fails: {check.path} comes first and has the wrong hash or cannot be read"
        else:
            to_download.append(fspec.name)
    if to_download:
        action = "fails (downloads are off)" if offline else "downloads"
        return f"Loading now {action}: {', '.join(to_download)} (no local copy)"
    return f"Loading now reads: {'; '.join(dict.fromkeys(used))}"


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
        folder = Path(path).expanduser() if path is not None else sources.user_cache_dir() / spec.name
        lines.append(f"Generated in code; never downloaded. Cache folder: {folder}")
    else:
        lines += _describe_files(spec) + _describe_places(spec, path)
        if sources.is_offline(None):
            lines.append(f"If missing: {_fix_hint(spec, 'unset ' + sources.OFFLINE_ENV)}")
        else:
            lines.append(f"If missing: {_fix_hint(spec, None)}, or run `wiringlab datasets fetch {spec.name}`")
    lines.append(f"Citation: {spec.citation}")
    return "\n".join(lines)
