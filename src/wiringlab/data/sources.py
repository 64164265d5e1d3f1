"""Where dataset files come from: local folders, the user cache, and hash-checked downloads.

Lookup order for file-based datasets: explicit ``path`` -> ``$WIRINGLAB_DATA/<name>/`` ->
system folders (:data:`SYSTEM_DIRS`) ``/<name>/`` -> user cache ``/<name>/`` -> download
(unless offline). A present file whose hash differs is an error, never skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .archives import content_sha256, file_digest, read_content, split_hash
from .errors import DataFormatError, DataIntegrityError, DatasetError, DatasetNotFoundError
from .spec import FileSpec

__all__ = [
    "SYSTEM_DIRS",
    "DATA_ENV",
    "CACHE_ENV",
    "OFFLINE_ENV",
    "Place",
    "FileCheck",
    "user_cache_dir",
    "is_offline",
    "lookup_places",
    "check_file",
    "verify_path",
    "download_file",
]

logger = logging.getLogger(__name__)

#: System-wide data roots; a dataset lives in ``<root>/<name>/`` (Debian's layout).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
DATA_ENV = "WIRINGLAB_DATA"
CACHE_ENV = "WIRINGLAB_CACHE"
OFFLINE_ENV = "WIRINGLAB_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}
Downloader = Callable[..., object]


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the user cache root.

    ``$WIRINGLAB_CACHE``, else ``$XDG_CACHE_HOME/wiringlab``, else ``~/.cache/wiringlab``.

    Args:
        env: Environment to read (default :data:`os.environ`).

    Returns:
        The folder (not created).
    """
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).expanduser() / "wiringlab"


def is_offline(allow_download: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """Decide whether downloads are refused.

    Args:
        allow_download: True/False decide; None follows ``$WIRINGLAB_OFFLINE`` (1/true/yes/on).
        env: Environment to read (default :data:`os.environ`).

    Returns:
        True when no download may happen.
    """
    if allow_download is not None:
        return not allow_download
    env = os.environ if env is None else env
    return env.get(OFFLINE_ENV, "").strip().lower() in _TRUE


@dataclass(frozen=True)
class Place:
    """A folder looked in, with a label saying why (``"explicit path"``, ``"system"``, ...)."""

    label: str
    folder: Path


def lookup_places(
    name: str,
    path: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    system_dirs: Sequence[str | os.PathLike] | None = None,
) -> list[Place]:
    """List the folders to look in, in lookup order.

    Args:
        name: Dataset name (the sub-folder under each root).
        path: Explicit folder holding the files (its ``<name>/`` sub-folder is tried too).
        env: Environment to read (default :data:`os.environ`); ``WIRINGLAB_DATA`` may hold
            several roots separated by ``os.pathsep``.
        system_dirs: System roots (default :data:`SYSTEM_DIRS`, read at call time).

    Returns:
        The places; the user cache is last.
    """
    env = os.environ if env is None else env
    places: list[Place] = []
    if path is not None:
        folder = Path(path).expanduser()
        places += [Place("explicit path", folder), Place("explicit path", folder / name)]
    for root in filter(None, env.get(DATA_ENV, "").split(os.pathsep)):
        places.append(Place(f"${DATA_ENV}", Path(root).expanduser() / name))
    for root in SYSTEM_DIRS if system_dirs is None else system_dirs:
        places.append(Place("system", Path(root) / name))
    places.append(Place("user cache", user_cache_dir(env) / name))
    return places


@dataclass(frozen=True)
class FileCheck:
    """The outcome of looking for one file in one folder.

    Attributes:
        spec: The file looked for.
        path: The candidate found, or None.
        status: ``"missing"``, ``"ok"``, ``"mismatch"`` (hash differs) or ``"unreadable"``.
        expected: The hash it should have (``"sha256:..."`` or the archive's).
        found: The hash it has (or the read error for ``"unreadable"``).
    """

    spec: FileSpec
    path: Path | None
    status: str
    expected: str | None = None
    found: str | None = None
    content: bytes | None = field(default=None, repr=False)

    def read_bytes(self) -> bytes:
        """Return the decompressed content (kept from verification when available).

        Returns:
            The bytes.

        Raises:
            DataFormatError: Corrupt gzip stream.
        """
        if self.content is not None:
            return self.content
        assert self.path is not None, "missing file has no content"
        return read_content(self.path)

    def describe(self) -> str:
        """One line for messages: what was found and whether its hash matches."""
        if self.status == "missing":
            return f"{self.spec.name}: missing (looked for {' or '.join(self.spec.candidates)})"
        if self.status == "ok":
            return f"{self.spec.name}: present ({self.path}), hash ok"
        return f"{self.spec.name}: {self.path}: {self.status}: expected {self.expected}, found {self.found}"

    def error(self) -> DataIntegrityError:
        """The error to raise for a mismatched or unreadable file."""
        if self.found.startswith(READ_ERROR):
            return DataIntegrityError(f"{self.path} could not be read: {self.found}. Check the file, its folder "
                                      "and their permissions, or delete it so that another copy is looked for.")
        cache = user_cache_dir()
        fix = (f"Delete it and run `wiringlab datasets fetch {self.path.parent.name}` (a download of ours)"
               if self.path.parent.parent == cache else
               "Delete or replace the file, or reinstall the package that provided it")
        return DataIntegrityError(
            f"{self.path} is truncated or corrupted: its hash does not match the registry "
            f"(expected {self.expected}, found {self.found}). {fix}."
        )


READ_ERROR = "read error"  # FileCheck.found of a file whose bytes could not be read


def verify_path(path: Path, fspec: FileSpec, keep_content: bool = False) -> FileCheck:
    """Check one existing file against a file spec.

    The decompressed content's sha256 is checked when known; otherwise the file must be the
    archive and match ``archive_hash``.

    Args:
        path: The file.
        fspec: What it should be.
        keep_content: Keep the decompressed bytes in the result (saves a second read).

    Returns:
        A :class:`FileCheck` with status ``"ok"``, ``"mismatch"`` or ``"unreadable"``.
    """
    expected = _expected(fspec)
    if fspec.sha256 is not None:
        try:
            digest, data = content_sha256(path)
        except DataFormatError as exc:  # the found hash is then the file's own, as stored
            own = file_digest(path, "sha256")
            return FileCheck(fspec, path, "unreadable", expected,
                             f"content that cannot be read ({exc}); the file's own sha256:{own}")
        except OSError as exc:  # the read itself failed (I/O error, permissions)
            return FileCheck(fspec, path, "unreadable", expected, f"{READ_ERROR} ({exc})")
        status = "ok" if digest == fspec.sha256.lower() else "mismatch"
        return FileCheck(fspec, path, status, expected, f"sha256:{digest}", data if keep_content else None)
    assert fspec.archive_hash is not None
    algorithm, wanted = split_hash(fspec.archive_hash)
    try:
        digest = file_digest(path, algorithm)
    except OSError as exc:
        return FileCheck(fspec, path, "unreadable", expected, f"{READ_ERROR} ({exc})")
    status = "ok" if digest == wanted else "mismatch"
    return FileCheck(fspec, path, status, expected, f"{algorithm}:{digest}")


def check_file(folder: Path, fspec: FileSpec, keep_content: bool = False) -> FileCheck:
    """Look for a file in a folder under each of its accepted names, in order: the first
    that verifies wins (a half-decompressed copy beside a good archive does not block it).

    Args:
        folder: The folder.
        fspec: The file.
        keep_content: See :func:`verify_path`.

    Returns:
        The check: ``"ok"`` for the first good candidate; else the first bad candidate's
        (``"mismatch"``/``"unreadable"``); ``"missing"`` when no candidate exists.
    """
    first_bad = None
    for candidate in fspec.candidates:
        path = folder / candidate
        try:
            present = path.is_file()
        except OSError as exc:  # a folder that cannot be searched (permissions): said, not a traceback
            first_bad = first_bad or FileCheck(fspec, path, "unreadable", _expected(fspec), f"{READ_ERROR} ({exc})")
            continue
        if present:
            check = verify_path(path, fspec, keep_content)
            if check.status == "ok":
                if first_bad is not None:
                    logger.warning("%s; using %s", first_bad.describe(), path)
                return check
            first_bad = first_bad or check
    return first_bad or FileCheck(fspec, None, "missing")


def _expected(fspec: FileSpec) -> str:
    """The hash a local file of `fspec` is checked against, as FileCheck.expected writes it:
    its content's sha256 when known, else its archive's hash."""
    if fspec.sha256 is not None:
        return f"sha256:{fspec.sha256.lower()}"
    return "{}:{}".format(*split_hash(fspec.archive_hash))


def _verify_download(path: Path, fspec: FileSpec) -> FileCheck:
    """Check a fresh download: the archive hash when known, then the content hash when known."""
    if fspec.archive_hash is not None:
        algorithm, wanted = split_hash(fspec.archive_hash)
        digest = file_digest(path, algorithm)
        if digest != wanted:
            return FileCheck(fspec, path, "mismatch", f"{algorithm}:{wanted}", f"{algorithm}:{digest}")
    if fspec.sha256 is not None:
        return verify_path(path, fspec)
    return FileCheck(fspec, path, "ok", fspec.archive_hash, fspec.archive_hash)


def _default_downloader() -> Downloader:
    import pooch  # noqa: PLC0415 - imported only when a download really happens

    return pooch.HTTPDownloader(progressbar=False, timeout=60)


def _try_mirror(url: str, fspec: FileSpec, staging: Path, downloader: Downloader) -> FileCheck:
    # the downloader itself, not pooch.retrieve: without a known hash retrieve logs "use this
    # value as known_hash", as if nothing were checked; _verify_download checks the hash
    fetched = staging / fspec.archive
    downloader(url, str(fetched), None)
    return _verify_download(fetched, fspec)


def download_file(
    fspec: FileSpec, mirrors: Sequence[str], dest_dir: Path, downloader: Downloader | None = None
) -> Path:
    """Download one file into ``dest_dir``, trying mirrors in order; only a verified file lands there.

    Each attempt downloads into a temporary folder inside ``dest_dir``, is hash-checked, and
    is moved into place with :func:`os.replace`; a failed attempt leaves nothing behind.

    Args:
        fspec: The file (its ``archive`` name is appended to each mirror).
        mirrors: Base URLs.
        dest_dir: Final folder (created if needed).
        downloader: pooch-style downloader ``(url, output_file, pooch, check_only=False)``;
            default :class:`pooch.HTTPDownloader`.

    Returns:
        The downloaded file's path.

    Raises:
        DataIntegrityError: Some mirror served bytes with the wrong hash, and none served good ones.
        DatasetNotFoundError: Every mirror failed (or there are none).
    """
    downloader = downloader or _default_downloader()
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable("create", dest_dir, exc) from exc
    remove_stale_downloads(dest_dir)
    failures: list[str] = []
    bad: list[FileCheck] = []
    for mirror in mirrors:
        url = mirror + fspec.archive
        logger.info("downloading %s", url)
        with _staging_folder(dest_dir) as staging:
            try:
                check = _try_mirror(url, fspec, Path(staging), downloader)
            except Exception as exc:  # noqa: BLE001 - downloaders raise anything (requests, OSError, ...)
                logger.warning("download from %s failed: %s", url, exc)
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if check.status == "ok":
                final = dest_dir / fspec.archive
                os.replace(check.path, final)
                return final
            logger.warning("download from %s has the wrong hash: %s", url, check.found)
            bad.append(check)
            failures.append(f"{url}: wrong hash (expected {check.expected}, found {check.found})")
    _remove_if_empty(dest_dir)
    if bad:
        raise DataIntegrityError(
            f"download of {fspec.archive} failed its hash check (expected {bad[0].expected}, "
            f"found {bad[0].found}); nothing was kept. Attempts: " + "; ".join(failures)
        )
    raise DatasetNotFoundError(f"could not download {fspec.archive}: " + ("; ".join(failures) or "no mirrors"))


STALE_DOWNLOAD_S = 3600.0  # a staging folder untouched this long belongs to a download that was killed
STAGING_PREFIX = ".download-"


def _staging_folder(dest_dir: Path) -> tempfile.TemporaryDirectory:
    """A temporary folder in `dest_dir` named after this process and host
    (`.download-<pid>@<host>-…`), so a later lookup can tell a killed download's folder."""
    try:
        return tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}@{socket.gethostname()}-",
                                           dir=dest_dir)
    except OSError as exc:
        raise _unwritable("write to", dest_dir, exc) from exc


def _unwritable(verb: str, dest_dir: Path, exc: OSError) -> DatasetError:
    return DatasetError(f"cannot {verb} the download folder {dest_dir} ({exc}); set {CACHE_ENV} to a writable "
                        "folder, or put the files where the lookup finds them")


def _owner_is_gone(staging: Path) -> bool:
    """The folder's download ran on this host in a process that no longer exists. A folder of
    another host, or of an older version (no pid in its name), cannot be told: False."""
    owner, _, rest = staging.name[len(STAGING_PREFIX):].partition("@")
    if not rest or not owner.isdigit() or rest.rsplit("-", 1)[0] != socket.gethostname():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's live process
        return False
    return False


def remove_stale_downloads(dest_dir: Path) -> None:
    """Delete staging folders of downloads killed before they could clean up (SIGKILL, a
    power cut): up to an archive's size each. Run before a download and on every lookup of
    the cache. A folder whose process on this host is gone goes at once; any other written to
    within the last hour may be a download in progress (on another host sharing the cache),
    and is left alone."""
    now = time.time()
    for staging in dest_dir.glob(f"{STAGING_PREFIX}*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
            newest = max([staging.stat().st_mtime, *(f.stat().st_mtime for f in staging.rglob("*"))])
            if _owner_is_gone(staging) or now - newest > STALE_DOWNLOAD_S:
                shutil.rmtree(staging)
                logger.info("removed %s, left by an interrupted download", staging)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or already gone
        folder.rmdir()
