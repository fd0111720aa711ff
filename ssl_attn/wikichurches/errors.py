"""Exceptions of the WikiChurches data layer (each message names the file and how to fix it)."""

from __future__ import annotations

__all__ = ["ChecksumError", "DownloadError", "MissingImageError", "WikiChurchesError"]


class WikiChurchesError(ValueError):
    """A WikiChurches file is missing, malformed or inconsistent (the message names the file,
    the key or element, and how to fix it)."""


class MissingImageError(WikiChurchesError, FileNotFoundError):
    """An image the annotations refer to is not on disk."""


class DownloadError(WikiChurchesError):
    """A Zenodo download failed (network, HTTP status, or an unknown file name)."""


class ChecksumError(DownloadError):
    """A downloaded file's checksum does not match the record's; the file was deleted."""
