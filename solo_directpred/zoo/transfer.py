"""Verified, resumable, lock-protected file downloads (urllib only).

:func:`fetch_file` brings one file into place:

1. it takes a file lock beside the destination, so threads and processes fetching the same file
   wait for one another and the file is downloaded once;
2. a file already in place is checked (size, then full sha256) and kept when it matches; a corrupt
   one is fetched again;
3. bytes stream into ``FILENAME.part`` with a progress bar; a partial file left by an interrupted
   transfer is resumed with an HTTP ``Range`` request (a server that ignores it restarts the file);
4. network failures, timeouts, truncated bodies and HTTP 408/425/429/5xx are retried with exponential
   back-off (``Retry-After`` honoured, capped at 60 s); other HTTP errors (404...) move on to the
   next source at once;
5. the ``.part`` file is hashed and moved into place with an atomic ``os.replace`` only when its
   sha256 matches, so a reader never sees a half-written or wrong file.

Sources are ``https://`` and ``http://`` URLs, ``file://`` URLs and ``hf://OWNER/REPO@REVISION/PATH``
references, resolved to ``{HF_ENDPOINT}/OWNER/REPO/resolve/REVISION/PATH`` (``HF_ENDPOINT`` defaults
to ``https://huggingface.co``; ``HF_TOKEN``, when set, is sent to that endpoint only). Which schemes a
manifest may use is decided by :mod:`solo_directpred.zoo.manifest`, not here.

Example::

    >>> from solo_directpred.zoo.transfer import fetch_file
    >>> fetch_file(["https://example.org/w.safetensors"], "w.safetensors", sha256="ab12...")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from solo_directpred.zoo.cache import offline_reason
from solo_directpred.zoo.errors import DownloadError, HashMismatchError, OfflineError
from solo_directpred.zoo.manifest import parse_hf_reference

logger = logging.getLogger(__name__)

HF_ENDPOINT_ENV = "HF_ENDPOINT"
HF_TOKEN_ENV = "HF_TOKEN"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CHUNK_SIZE = 1 << 20
MAX_DELAY_S = 60.0


class _Retry(Exception):
    """A transient failure; ``delay`` is the server's ``Retry-After`` hint in seconds, if any."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hf_endpoint() -> str:
    """The Hugging Face endpoint from ``HF_ENDPOINT`` (http or https), without a trailing slash."""
    endpoint = os.environ.get(HF_ENDPOINT_ENV, "").strip() or DEFAULT_HF_ENDPOINT
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(
            f"{HF_ENDPOINT_ENV}={endpoint!r} is not an http(s) URL such as {DEFAULT_HF_ENDPOINT}"
        )
    return endpoint.rstrip("/")


def resolve_url(source: str) -> str:
    """The URL to request for ``source``: ``hf://`` references become Hub ``resolve`` URLs."""
    if source.startswith("hf://"):
        repo, revision, path = parse_hf_reference(source)
        return f"{hf_endpoint()}/{repo}/resolve/{revision}/{quote(path)}"
    return source


def file_matches(path: Path, sha256: str | None, size: int | None) -> bool:
    """Whether ``path`` exists with the expected ``size`` (bytes) and ``sha256`` (None = not checked)."""
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or sha256_file(path) == sha256


class _Options(NamedTuple):
    retries: int
    backoff: float
    timeout: float
    progress: bool


def fetch_file(
    sources: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    size: int | None = None,
    force: bool = False,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool = True,
    lock_timeout: float = 3600.0,
) -> Path:
    """Make ``dest`` hold the verified file, downloading it from the first ``sources`` that delivers.

    Args:
        sources: URLs / ``hf://`` references tried in order (mirrors).
        dest: final path; ``dest.part`` and ``dest.lock`` are created beside it.
        sha256: expected full hex digest (lowercase); None skips the hash check (bare URLs).
        size: expected size in bytes; None skips the size check.
        force: discard a cached copy (and any partial file) and download again.
        retries: extra attempts per source after a transient failure (>= 0).
        backoff: first retry delay in seconds, doubled on each retry (capped at 60 s).
        timeout: socket timeout per request, seconds.
        progress: show a tqdm progress bar on stderr.
        lock_timeout: seconds to wait for another process downloading the same file.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        OfflineError: offline mode is on and no valid copy or ``file://`` source exists.
        HashMismatchError: every source delivered bytes with the wrong sha256.
        DownloadError: no source could be downloaded.
    """
    from filelock import FileLock, Timeout

    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    options = _Options(retries, backoff, timeout, progress)
    try:
        with FileLock(str(dest) + ".lock", timeout=lock_timeout):
            if force:
                for stale in (dest, dest.with_name(dest.name + ".part")):
                    stale.unlink(missing_ok=True)
            return _fetch_locked(list(sources), dest, sha256, size, options)
    except Timeout as err:
        raise DownloadError(
            f"waited {lock_timeout:.0f} s for another download of {dest} to finish; "
            f"if none is running, delete {dest}.lock"
        ) from err


def _fetch_locked(
    sources: list[str], dest: Path, sha256: str | None, size: int | None, options: _Options
) -> Path:
    corrupt = False
    if dest.exists():
        if file_matches(dest, sha256, size):
            return dest
        corrupt = True
        logger.warning("cached file %s does not match its sha256/size; fetching it again", dest)
    reason = offline_reason()
    if reason is not None:
        sources = [s for s in sources if urlsplit(s).scheme == "file"]
        if not sources:
            state = "is corrupt" if corrupt else "is not in the cache"
            raise OfflineError(
                f"{dest.name} {state} ({dest}) and offline mode is on ({reason}); "
                "unset the variable to download it, or place a verified copy at that path"
            )
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    for source in sources:
        failure = _fetch_source(source, part, sha256, size, options, dest.name)
        if failure is None:
            if corrupt:
                dest.unlink()
            os.replace(part, dest)
            return dest
        failures.append(failure)
    mismatch = any("does not match the expected" in f for f in failures)
    error = HashMismatchError if mismatch else DownloadError
    raise error(f"could not fetch {dest.name}:\n  " + "\n  ".join(failures or ["no source given"]))


def _fetch_source(
    source: str, part: Path, sha256: str | None, size: int | None, options: _Options, desc: str
) -> str | None:
    """Bring ``source`` into ``part`` and verify it; the reason it failed, or None.

    A wrong size or hash after resuming a partial file left by an earlier run (which may belong to
    an older upload) is retried once from byte 0 before the source is given up.
    """
    resumed = part.exists()
    try:
        failure = _download_verified(source, part, sha256, size, options, desc)
        if failure is not None and resumed:
            logger.warning("%s; the resumed partial file was stale, downloading from scratch", failure)
            failure = _download_verified(source, part, sha256, size, options, desc)
    except DownloadError as err:
        return str(err)
    return failure


def _download_verified(
    source: str, part: Path, sha256: str | None, size: int | None, options: _Options, desc: str
) -> str | None:
    """Download into ``part``; a size/hash mismatch deletes it and is returned as a message."""
    url = resolve_url(source)
    _download(url, part, size, options, desc)
    got = part.stat().st_size
    if size is not None and got != size:
        failure = f"{url}: got {got} bytes, the manifest says {size}"
    elif sha256 is not None and (actual := sha256_file(part)) != sha256:
        failure = f"{url}: sha256 {actual} does not match the expected {sha256}"
    else:
        return None
    part.unlink()
    return failure


def _download(url: str, part: Path, size: int | None, options: _Options, desc: str) -> None:
    """Download ``url`` into ``part``, resuming what is there; retry transient failures."""
    attempt = 0
    while True:
        try:
            _attempt(url, part, size, options.timeout, options.progress, desc)
            return
        except _Retry as err:
            attempt += 1
            if attempt > options.retries:
                raise DownloadError(f"{url}: gave up after {attempt} attempts; last error: {err}") from err
            delay = err.delay if err.delay is not None else options.backoff * 2 ** (attempt - 1)
            delay = min(max(delay, 0.0), MAX_DELAY_S)
            logger.warning("%s: %s; retry %d/%d in %.1f s", url, err, attempt, options.retries, delay)
            time.sleep(delay)


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "solo-directpred-zoo"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    token = os.environ.get(HF_TOKEN_ENV, "").strip()
    if token and url.startswith(hf_endpoint() + "/"):
        # unredirected: the token is not forwarded when the Hub redirects to its storage backend
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    return urllib.request.urlopen(request, timeout=timeout)


def _attempt(url: str, part: Path, size: int | None, timeout: float, progress: bool, desc: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # a previous transfer completed but was not verified yet
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            part.unlink()  # our partial file is longer than the remote one: start over
            raise _Retry(f"HTTP 416 for a resume at byte {offset}; restarting") from err
        if err.code in RETRYABLE_STATUS:
            raise _Retry(
                f"HTTP {err.code} {err.reason}", _retry_after(err.headers.get("Retry-After"))
            ) from err
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, OSError) and not isinstance(
            err.reason, (FileNotFoundError, PermissionError)
        ):
            raise _Retry(f"{err.reason}") from err
        raise DownloadError(f"{url}: {err.reason}") from err
    except (OSError, http.client.HTTPException) as err:
        raise _Retry(f"{type(err).__name__}: {err}") from err
    with contextlib.closing(response):
        status = getattr(response, "status", None) or 200
        append = False
        if offset and status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Retry(f"server resumed at byte {start}, not {offset}; restarting")
            append = True
        elif status != 200:
            raise DownloadError(f"{url}: unexpected HTTP status {status}")
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        start_at = offset if append else 0
        total = start_at + expected if expected is not None else size
        try:
            received = _stream(response, part, append, start_at, total, progress, desc)
        except (OSError, http.client.HTTPException) as err:
            raise _Retry(f"transfer interrupted: {type(err).__name__}: {err}") from err
    if expected is not None and received < expected:
        raise _Retry(f"connection closed after {received} of {expected} bytes")


def _stream(
    response, part: Path, append: bool, initial: int, total: int | None, progress: bool, desc: str
) -> int:
    from tqdm.auto import tqdm

    received = 0
    bar = tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=not progress,
    )
    with bar, open(part, "ab" if append else "wb") as fh:
        while True:
            chunk = response.read(CHUNK_SIZE)
            if not chunk:
                break
            fh.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())
    return received


def _content_range_start(header: str | None) -> int | None:
    """``"bytes 100-199/200"`` -> 100; None when the header is missing or malformed."""
    if not header or not header.startswith("bytes "):
        return None
    first = header[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _retry_after(header: str | None) -> float | None:
    if header and header.strip().isdigit():
        return float(header.strip())
    return None
