"""The error hierarchy.

Every error raised on purpose by ``core`` derives from :class:`DashboardError`, whose message is
written to be shown to a clinician as it is (plain words, no stack trace, no patient identifiers).
Pages catch :class:`DashboardError` and show ``st.error``; the CLI prints one line and exits
non-zero. Third-party errors are chained with ``raise ... from e`` so the cause stays in logs.
"""

from __future__ import annotations


class DashboardError(Exception):
    """Base class: the message is safe and meaningful to show to a clinician."""


class InvalidInputError(DashboardError):
    """The input is not something we can read (wrong type, truncated, empty, too large)."""


class UnsupportedDicomError(InvalidInputError):
    """A DICOM file we cannot use (no pixel data, unsupported compression or photometry)."""


class InconsistentSeriesError(InvalidInputError):
    """A set of slices that do not form one consistent volume."""


class MissingModelError(DashboardError):
    """A model id that the manifest does not describe, or whose weights file is absent."""


class WeightsIntegrityError(DashboardError):
    """A weights file whose sha256 does not match the manifest, or that does not load."""


class InsufficientDataError(DashboardError):
    """Too little data for the requested analysis or training run."""


class OutsideDataRootsError(InvalidInputError):
    """A path typed into the app that leads outside the folders the app may read (its data roots)."""


class PacsError(DashboardError):
    """A PACS that cannot be reached, refuses the association or the request, times out, or
    sends less than it promised; the message names the server by host and port, never a
    credential."""
