"""Exceptions raised by the checkpoint zoo; all derive from :class:`ZooError`."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""


class ManifestError(ZooError):
    """A manifest is not valid JSON or breaks the schema; ``problems`` lists every violation found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listing = "\n  ".join(self.problems)
        super().__init__(f"invalid zoo manifest {source}:\n  {listing}")


class DownloadError(ZooError):
    """No source could deliver the file (HTTP error, network failure, retries exhausted)."""


class HashMismatchError(DownloadError):
    """The downloaded or cached bytes do not have the sha256 the manifest promises."""


class OfflineError(ZooError):
    """Offline mode is on and the file is not in the cache."""


class UnsafeCheckpointError(ZooError):
    """A checkpoint needs arbitrary pickle globals to load; the zoo refuses to execute them."""
