"""What the X-ray and CT readers agree on about a file before and while they decode it.

:mod:`core.io.images` and :mod:`core.io.ct_slices` both sniff a DICOM dataset written without
preamble, accept the same grey photometric interpretations, and call the same third-party
errors "this file cannot be decoded"; these are that one rule each.
"""

from __future__ import annotations

from core.errors import DashboardError

#: The grey photometric interpretations a radiograph or a CT slice may have.
GREY_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})


def looks_like_raw_dicom(data: bytes) -> bool:
    """A dataset without preamble nor meta header starts with a tag of group 0002 or 0008
    (little- or big-endian)."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def is_decoder_failure(error: BaseException) -> bool:
    """Whether a third-party error means "this file cannot be decoded".

    Decoders raise many types on damaged input (OSError, ValueError, SyntaxError, struct.error,
    zlib.error, pydicom's BytesLengthException, ...) and Rust-backed plugins (pylibjpeg-rle) raise
    pyo3's PanicException, a BaseException: all of them are the file's fault. Our own errors,
    MemoryError, KeyboardInterrupt and SystemExit are not, and propagate unchanged.
    """
    if isinstance(error, (DashboardError, MemoryError)):
        return False
    return isinstance(error, Exception) or type(error).__name__ == "PanicException"
