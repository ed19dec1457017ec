"""Finding marker strings in bytes, wherever they could hide.

:func:`find_markers` greps raw bytes case-insensitively, as ASCII / UTF-8 and as UTF-16-LE, and
opens what a marker could sit inside of without showing up in a plain grep: zlib streams (PNG
``zTXt`` / ``iTXt`` text and ``IDAT`` image data, other deflated data), gzip members, zip
members, base64 runs (``data:`` URIs in HTML reports, base64 in JSON), and SQLite files (their
raw pages, and every TEXT / BLOB value read back through sqlite3). What is found inside is
scanned again, to a bounded depth. :func:`scan_tree` does it for every file under a folder, and
names each file's path too (a file named after a patient is a hit).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import re
import sqlite3
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_MAX_DEPTH = 4
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZIP_MAGIC = b"PK\x03\x04"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PIXELS = " > PNG IDAT"
#: Markers are grouped by this many first characters (see :class:`_Index`).
_PREFIX_CHARS = 2


@dataclass(frozen=True)
class Hit:
    """One marker found: which, in what (e.g. ``"library/library.sqlite > column notes"``),
    and the bytes around it."""

    marker: str
    where: str
    context: bytes

    def describe(self, markers: Mapping[str, str] | None = None) -> str:
        origin = f" ({markers[self.marker]})" if markers and self.marker in markers else ""
        return f"{self.marker}{origin} in {self.where}: ...{self.context!r}..."


class _Index:
    """The markers to find, grouped by the first characters of their case-folded ASCII and
    UTF-16-LE forms, then by length: a blob is searched once per group (about twenty), and each
    place a group's prefix occurs is looked up by the slice of each length the group has.
    Each form carries whether a digit may stand before it and after it (:func:`_digits_around`)."""

    def __init__(self, markers: Iterable[str]) -> None:
        self.groups: dict[bytes, dict[int, dict[bytes, list[tuple[str, int, bool, bool]]]]] = {}
        for marker in markers:
            before, after = _digits_around(marker)
            for form, width in ((marker.encode("utf-8").lower(), 1), (marker.encode("utf-16-le").lower(), 2)):
                by_length = self.groups.setdefault(form[: _PREFIX_CHARS * width], {})
                by_length.setdefault(len(form), {}).setdefault(form, []).append((marker, width, before, after))


_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_DATE_DIGITS = 8


def _digits_around(marker: str) -> tuple[bool, bool]:
    """Whether a hit of ``marker`` may have a digit (before it, after it).

    A marker made of digits (a number, ``970042`` or ``970042.25``; a date, ``16010715``) is
    only the marker where it is a number of its own: the random decimal UIDs our de-identifier
    makes (``2.25.`` and 39 digits, dozens per stored file) hold any six digits now and then
    (found: ``970013`` inside one). A date may be followed by digits: a date-time continues it
    with the time of day. Other markers (``MKRX0042Q``, the marker UIDs) match anywhere.
    """
    if not _NUMBER.fullmatch(marker):
        return True, True
    return False, len(marker) == _DATE_DIGITS


def _is_digit_at(blob: bytes, pos: int, width: int) -> bool:
    """Whether the character at byte ``pos`` of ``blob`` (ASCII, or UTF-16-LE when ``width`` is
    2) is a decimal digit."""
    if pos < 0 or pos + width > len(blob):
        return False
    return 0x30 <= blob[pos] <= 0x39 and (width == 1 or blob[pos + 1] == 0)


def _grep(blob: bytes, index: _Index, where: str) -> list[Hit]:
    hits = []
    folded = blob.lower()
    for prefix, by_length in index.groups.items():
        start = folded.find(prefix)
        while start != -1:
            for length, forms in by_length.items():
                for marker, width, before, after in forms.get(folded[start : start + length], ()):
                    if not before and _is_digit_at(folded, start - width, width):
                        continue
                    if not after and _is_digit_at(folded, start + length, width):
                        continue
                    hits.append(Hit(marker, where, blob[max(0, start - 40) : start + length + 40]))
            start = folded.find(prefix, start + 1)
    return hits


def _inflate(data: bytes, wbits: int) -> bytes | None:
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(data, 64 << 20)
        return out if out else None
    except zlib.error:
        return None


def _png_chunks(blob: bytes) -> Iterable[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG file (IDAT chunks joined, as they form one stream)."""
    pos, idat = 8, []
    while pos + 8 <= len(blob):
        length = int.from_bytes(blob[pos : pos + 4], "big")
        kind = blob[pos + 4 : pos + 8]
        data = blob[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IDAT":
            idat.append(data)
        else:
            yield kind, data
        if kind == b"IEND":
            break
    if idat:
        yield b"IDAT", b"".join(idat)


def _containers(blob: bytes, where: str) -> Iterable[tuple[bytes, str]]:
    """What ``blob`` holds inside that a plain grep would not read: (inner bytes, where)."""
    if blob.startswith(_PNG_MAGIC):
        for kind, data in _png_chunks(blob):
            name = kind.decode("latin-1")
            if kind == b"zTXt":
                keyword, _, rest = data.partition(b"\0")
                inner = _inflate(rest[1:], zlib.MAX_WBITS)
                yield keyword + b"\0" + (inner or b""), f"{where} > PNG zTXt"
            elif kind == b"iTXt":
                parts = data.split(b"\0", 3)
                if len(parts) == 4 and len(parts[1]) >= 1 and parts[1][:1] == b"\x01":
                    text = parts[3].split(b"\0", 1)[-1]
                    yield (_inflate(text, zlib.MAX_WBITS) or b""), f"{where} > PNG iTXt"
            elif kind == b"IDAT":
                inner = _inflate(data, zlib.MAX_WBITS)
                if inner:
                    yield inner, f"{where}{_PIXELS}"
            elif kind not in (b"IHDR", b"IEND"):
                yield data, f"{where} > PNG {name}"
        return
    if blob.startswith(_SQLITE_MAGIC):
        yield from _sqlite_values(blob, where)
        return
    if blob.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as archive:
                for info in archive.infolist():
                    yield info.filename.encode("utf-8"), f"{where} > zip member name"
                    yield archive.read(info), f"{where} > zip {info.filename}"
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError):
            pass
    if _GZIP_MAGIC in blob:
        start = blob.index(_GZIP_MAGIC)
        try:
            yield gzip.decompress(blob[start:]), f"{where} > gzip"
        except (OSError, EOFError, zlib.error):
            pass
    for header in _ZLIB_HEADERS:
        start = blob.find(header)
        while start != -1:
            inner = _inflate(blob[start:], zlib.MAX_WBITS)
            if inner is not None and len(inner) > 2:
                yield inner, f"{where} > zlib at {start}"
            start = blob.find(header, start + 1)
    for m in _BASE64_RUN.finditer(blob):
        run = m.group(0)
        try:
            decoded = base64.b64decode(run[: len(run) - len(run) % 4] if not run.endswith(b"=") else run)
        except (binascii.Error, ValueError):
            continue
        yield decoded, f"{where} > base64 at {m.start()}"


def _sqlite_values(blob: bytes, where: str) -> Iterable[tuple[bytes, str]]:
    """Every TEXT and BLOB value of every table of a SQLite file given as bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "copy.sqlite"
        path.write_bytes(blob)
        try:
            con = sqlite3.connect(path)
        except sqlite3.Error:
            return
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                cursor = con.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from the file itself
                columns = [c[0] for c in cursor.description]
                for row in cursor:
                    for column, value in zip(columns, row, strict=True):
                        if isinstance(value, str):
                            yield value.encode("utf-8"), f"{where} > {table}.{column}"
                        elif isinstance(value, bytes):
                            yield value, f"{where} > {table}.{column}"
        except sqlite3.Error:
            return
        finally:
            con.close()


def find_markers(blob: bytes, markers: Iterable[str] | _Index, where: str = "bytes", *, _depth: int = 0) -> list[Hit]:
    """Every occurrence of every marker in ``blob`` and in what it holds (see the module)."""
    index = markers if isinstance(markers, _Index) else _Index(markers)
    hits = _grep(blob, index, where)
    # A PNG's pixels are read as they are (a marker drawn as text bytes), not opened further:
    # any run of them may look like base64 or a zlib header, and there is nothing inside.
    if _depth < _MAX_DEPTH and not where.endswith(_PIXELS):
        for inner, inner_where in _containers(blob, where):
            if inner and inner != blob:
                hits.extend(find_markers(inner, index, inner_where, _depth=_depth + 1))
    return hits


def find_in_text(text: str, markers: Iterable[str], where: str) -> list[Hit]:
    """:func:`find_markers` on text (encoded as UTF-8)."""
    return find_markers(text.encode("utf-8", "surrogateescape"), markers, where)


def scan_tree(root: Path, markers: Iterable[str]) -> tuple[list[Hit], int]:
    """Hits in every file under ``root`` and in every path's name; and how many files were read."""
    index = _Index(markers)
    hits: list[Hit] = []
    n = 0
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        hits.extend(find_markers(rel.encode("utf-8"), index, f"the path {rel}"))
        if path.is_file():
            n += 1
            hits.extend(find_markers(path.read_bytes(), index, rel))
    return hits, n
