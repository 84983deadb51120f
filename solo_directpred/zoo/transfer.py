"""Verified downloads: the size and sha256 pin across mirrors, on top of huggingface_hub and torch.hub.

The transfers are the libraries' own; what is left here is what none of them does. :func:`fetch_file`

1. takes a file lock beside the destination (``filelock``), so threads and processes fetching the same
   file wait for one another and the file is placed once;
2. keeps a file already in place when its size and full sha256 match (a corrupt one is fetched again);
3. tries the sources in order (mirrors):

   * ``hf://OWNER/REPO@COMMIT/PATH`` with :func:`huggingface_hub.hf_hub_download`: its cache
     (``HF_HUB_CACHE``), the commit pin, ``HF_ENDPOINT``, ``HF_TOKEN``, its resumed and retried
     transfers, offline mode (``HF_HUB_OFFLINE``); the verified file is hard-linked (else copied) into place;
   * ``https://`` and ``file://`` URLs (``http://`` too; manifests refuse it) with
     :func:`torch.hub.download_url_to_file` (progress bar; no resume, no retry: a failure moves on to the
     next source);

4. checks the bytes against the expected size and sha256, and only then moves them into place with an
   atomic ``os.replace``, so a reader never sees a half-written or wrong file.

Offline mode (``SOLO_DIRECTPRED_OFFLINE=1``, or huggingface_hub's ``HF_HUB_OFFLINE=1``) serves files from
the cache, from huggingface_hub's cache and from ``file://`` sources only.

Example::

    >>> from solo_directpred.zoo.transfer import fetch_file
    >>> fetch_file(["https://example.org/w.safetensors"], "w.safetensors", sha256="ab12...")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import huggingface_hub
import torch.hub

from solo_directpred.zoo.errors import DownloadError, HashMismatchError, OfflineError
from solo_directpred.zoo.manifest import parse_hf_reference

logger = logging.getLogger(__name__)

OFFLINE_ENV = "SOLO_DIRECTPRED_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}
_CHUNK = 1 << 20


def offline_reason() -> str | None:
    """What switched offline mode on (``SOLO_DIRECTPRED_OFFLINE=1`` or ``HF_HUB_OFFLINE``), or None."""
    value = os.environ.get(OFFLINE_ENV, "").strip()
    if value.lower() in _TRUE:
        return f"{OFFLINE_ENV}={value}"
    return "HF_HUB_OFFLINE" if huggingface_hub.constants.HF_HUB_OFFLINE else None


def is_offline() -> bool:
    """Whether offline mode is on (see the module docstring)."""
    return offline_reason() is not None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mismatch(path: Path, sha256: str | None, size: int | None) -> str | None:
    """Why ``path`` is not the expected file (size in bytes, full sha256; None = not checked), or None."""
    if not path.is_file():
        return "missing"
    got = path.stat().st_size
    if size is not None and got != size:
        return f"got {got} bytes, the manifest says {size}"
    if sha256 is not None and (actual := sha256_file(path)) != sha256:
        return f"sha256 {actual} does not match the expected {sha256}"
    return None


def fetch_file(
    sources: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    size: int | None = None,
    force: bool = False,
    progress: bool = True,
    lock_timeout: float = 3600.0,
) -> Path:
    """Make ``dest`` hold the verified file, from the first of ``sources`` that delivers it.

    Args:
        sources: ``hf://`` references and URLs, tried in order (mirrors).
        dest: final path; ``dest.part`` and ``dest.lock`` are created beside it.
        sha256: expected full hex digest (lowercase); None skips the hash check (bare URLs).
        size: expected size in bytes; None skips the size check.
        force: fetch again even when a valid copy is in place (``hf://``: bypassing huggingface_hub's cache).
        progress: show the library's progress bar on stderr (``https://``, ``file://``).
        lock_timeout: seconds to wait for another process fetching the same file.

    Raises:
        OfflineError: offline mode is on and no valid copy is in a cache or behind a ``file://`` source.
        HashMismatchError: every source delivered bytes of the wrong size or sha256.
        DownloadError: no source could be downloaded.
    """
    from filelock import FileLock, Timeout

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{dest}.lock", timeout=lock_timeout):
            corrupt = dest.exists() and mismatch(dest, sha256, size) is not None
            if dest.exists() and not (corrupt or force):
                return dest
            if corrupt:
                logger.warning("cached file %s does not match its sha256/size; fetching it again", dest)
            return _fetch(list(sources), dest, sha256, size, force or corrupt, progress, corrupt)
    except Timeout as err:
        raise DownloadError(
            f"waited {lock_timeout:.0f} s for another download of {dest} to finish; "
            f"if none is running, delete {dest}.lock"
        ) from err


def _fetch(
    sources: list[str],
    dest: Path,
    sha256: str | None,
    size: int | None,
    force: bool,
    progress: bool,
    corrupt: bool,
) -> Path:
    reason = offline_reason()
    failures: list[str] = []
    wrong_bytes = False
    for source in sources:
        scheme = urlsplit(source).scheme
        if reason is not None and scheme not in ("hf", "file"):
            continue
        try:
            if scheme == "hf":
                problem = _fetch_hf(source, dest, sha256, size, force, offline=reason is not None)
            else:
                problem = _fetch_url(source, dest, sha256, size, progress)
            wrong_bytes = wrong_bytes or problem is not None
        except Exception as err:  # noqa: BLE001 - whatever one source raises, the next one is tried; all are reported
            problem = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        if problem is None:
            return dest
        failures.append(f"{source}: {problem}")
    if reason is not None:
        state = "is corrupt" if corrupt else "is not in the cache"
        raise OfflineError(
            f"{dest.name} {state} ({dest}) and offline mode is on ({reason}); "
            "unset the variable to download it, or place a verified copy at that path"
        )
    error = HashMismatchError if wrong_bytes else DownloadError
    raise error(f"could not fetch {dest.name}:\n  " + "\n  ".join(failures or ["no source given"]))


def _fetch_url(source: str, dest: Path, sha256: str | None, size: int | None, progress: bool) -> str | None:
    part = dest.with_name(dest.name + ".part")
    torch.hub.download_url_to_file(source, str(part), progress=progress)
    problem = mismatch(part, sha256, size)
    if problem is None:
        os.replace(part, dest)
    else:
        part.unlink()
    return problem


def _fetch_hf(
    source: str, dest: Path, sha256: str | None, size: int | None, force: bool, offline: bool
) -> str | None:
    """Bring ``source`` through huggingface_hub's cache; a blob that fails the check is fetched again once."""
    repo, revision, filename = parse_hf_reference(source)

    def cached(force_download: bool) -> Path:
        path = huggingface_hub.hf_hub_download(
            repo, filename, revision=revision, force_download=force_download, local_files_only=offline
        )
        return Path(path).resolve()

    path = cached(force and not offline)
    problem = mismatch(path, sha256, size)
    if problem is not None and not (offline or force):
        logger.warning("%s in the Hugging Face cache: %s; downloading it again", source, problem)
        path = cached(True)
        problem = mismatch(path, sha256, size)
    if problem is None:
        with write_atomically(dest) as tmp:  # a hard link where the file system allows, else a copy
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
    return problem


@contextlib.contextmanager
def write_atomically(dest: Path) -> Iterator[Path]:
    """A scratch path beside ``dest`` (folder created) that replaces ``dest`` once the block has written it.

    ``os.replace`` is atomic: a reader sees the old file or the complete new one, never a half-written one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    yield tmp
    os.replace(tmp, dest)
