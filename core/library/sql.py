"""The SQL every case library store shares: :class:`SqlLibrary`.

The statements here run unchanged on SQLite and on PostgreSQL: ``?`` placeholders (the
PostgreSQL store translates them), ``INSERT ... ON CONFLICT`` instead of ``INSERT OR REPLACE``,
``RETURNING id`` instead of a last row id, no boolean arithmetic. A store supplies its
connections (:meth:`SqlLibrary._connect`, :meth:`SqlLibrary._writing`) and where an image's
bytes live (:meth:`SqlLibrary._store_image_files`, :meth:`SqlLibrary.image_files`).
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from core.errors import InvalidInputError
from core.library import meetings_store
from core.library.audit import AuditEntry, utc_now
from core.library.base import CaseLibrary, Connection, LibraryError, NewImage
from core.library.meeting_records import (
    HIDEABLE,
    Meeting,
    MeetingCase,
    Read,
    check_comment,
    check_confidence,
    check_date,
    check_hidden,
    check_model,
    check_model_read,
    check_read,
    check_reader,
    check_title,
)
from core.library.records import (
    IMAGE_KINDS,
    MODALITIES,
    ImageRecord,
    ImageRef,
    LibraryCounts,
    NewPatient,
    NewStudy,
    Patient,
    PatientFilter,
    PatientSummary,
    Study,
)

_PATIENT_COLUMNS = (
    "label",
    "sex",
    "age_years",
    "outcome",
    "survival",
    "length_of_stay_days",
    "went_icu",
    "intubated",
)


def _bool_or_none(value: object) -> bool | None:
    return None if value is None else bool(value)


def _int_or_none(value: bool | None) -> int | None:
    return None if value is None else int(value)


#: Ids listed in one ``IN (...)`` (SQLite allows 32,766 parameters in a statement).
_IDS_PER_QUERY = 10_000

_UPSERT_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


def _new_id(con: Connection, insert: str, parameters: Sequence[Any]) -> int:
    """Run an INSERT and return the id of the row it made."""
    return int(con.execute(insert + " RETURNING id", parameters).fetchone()[0])


class SqlLibrary(CaseLibrary):
    """A case library in SQL tables (see ``core/library/store.py`` for the schema)."""

    # -- what a store supplies ------------------------------------------------------------
    @abc.abstractmethod
    def _connect(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection for reading; each statement sees every change committed before it."""

    @abc.abstractmethod
    def _writing(self) -> contextlib.AbstractContextManager[Connection]:
        """One write transaction, committed at the end or rolled back on any error; writers queue."""

    @abc.abstractmethod
    def _store_image_files(self, con: Connection, image_id: int, path: str, image: NewImage) -> None:
        """Keep an image's files (inside the write transaction ``con``) under ``path``."""

    def _prepare_study_files(self, pseudonym: str, study_id: int) -> None:
        """Before a study's images are stored: clear what a killed write may have left."""

    def _discard_study_files(self, pseudonym: str, study_id: int) -> None:
        """After a failed write: remove the files the write had stored outside the database."""

    def _discard_patient_files(self, pseudonym: str) -> None:
        """After a patient was deleted: remove their files kept outside the database."""

    def _copied_in(self, con: Connection) -> None:
        """After rows were copied in with their ids (:mod:`core.library.migrate`), inside the
        copy's transaction: bring what the store derives from them up to date."""

    def reload_secret(self) -> None:
        """Read the library's secret again (after a migration replaced it)."""
        self._secret = bytes.fromhex(self._meta("secret"))

    def _meta(self, key: str) -> str:
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise LibraryError(f"The case library at {self.location} is damaged (no {key}).")
        return str(row[0])

    def secret(self) -> bytes:
        return self._secret

    def setting(self, key: str) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (f"setting:{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._writing() as con:
            con.execute(_UPSERT_META, (f"setting:{key}", value))

    # -- writing --------------------------------------------------------------------------
    def has_source_key(self, key: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM studies WHERE source_key = ?", (key,)).fetchone() is not None

    def study_of_source_key(self, key: str) -> tuple[str, int] | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT p.pseudonym, s.id FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.source_key = ?",
                (key,),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def source_keys(self) -> set[str]:
        with self._connect() as con:
            return {str(row[0]) for row in con.execute("SELECT source_key FROM studies")}

    def add_case(self, patient: NewPatient, study: NewStudy, images: Sequence[NewImage], source_key: str) -> int:
        if study.modality not in MODALITIES:
            raise InvalidInputError(f"Unknown modality {study.modality!r}; expected one of {', '.join(MODALITIES)}.")
        for image in images:
            if image.kind not in IMAGE_KINDS:
                raise InvalidInputError(f"Unknown image kind {image.kind!r}.")
            if not image.files:
                raise InvalidInputError("An image to store has no files.")
        study_id: int | None = None
        try:
            # One transaction: the patient, the study, its images. Files a store keeps outside
            # the database are written before the commit and removed on failure; a process killed
            # in between leaves only files no row points to, which the next write of that study
            # id replaces.
            with self._writing() as con:
                patient_id = self._upsert_patient(con, patient)
                study_id = _new_id(
                    con,
                    "INSERT INTO studies (patient_id, modality, view, offset_onset_days, offset_admission_days,"
                    " label, note, findings_json, source_key, burned_in) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        patient_id,
                        study.modality,
                        study.view,
                        study.offset_onset_days,
                        study.offset_admission_days,
                        study.label,
                        study.note,
                        None if study.findings is None else json.dumps(study.findings, sort_keys=True),
                        source_key,
                        study.burned_in,
                    ),
                )
                self._record(con, "add-case", patient.pseudonym, study_id, f"{study.modality} from {patient.source}")
                self._prepare_study_files(patient.pseudonym, study_id)
                folder = f"{patient.pseudonym}/{study_id:07d}"
                for n, image in enumerate(images):
                    path = f"{folder}/series-{n}" if image.kind == "ct-series" else f"{folder}/{image.files[0][0]}"
                    image_id = _new_id(
                        con,
                        "INSERT INTO images (study_id, kind, path, n_files, width, height, depth, thumbnail)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            study_id,
                            image.kind,
                            path,
                            len(image.files),
                            image.width,
                            image.height,
                            image.depth,
                            image.thumbnail_png,
                        ),
                    )
                    self._store_image_files(con, image_id, path, image)
        except BaseException:
            if study_id is not None:
                self._discard_study_files(patient.pseudonym, study_id)
            raise
        return study_id

    def _upsert_patient(self, con: Connection, p: NewPatient) -> int:
        values = (
            p.label,
            p.sex,
            p.age_years,
            p.outcome,
            _int_or_none(p.survival),
            p.length_of_stay_days,
            _int_or_none(p.went_icu),
            _int_or_none(p.intubated),
        )
        row = con.execute("SELECT id FROM patients WHERE pseudonym = ?", (p.pseudonym,)).fetchone()
        if row is None:
            return _new_id(
                con,
                f"INSERT INTO patients (pseudonym, source, {', '.join(_PATIENT_COLUMNS)}) VALUES (?, ?{', ?' * 8})",
                (p.pseudonym, p.source, *values),
            )
        # Known patient: fill in what this row knows, keep what earlier rows knew.
        sets = ", ".join(f"{c} = COALESCE(?, {c})" for c in _PATIENT_COLUMNS)
        con.execute(f"UPDATE patients SET {sets} WHERE id = ?", (*values, row[0]))
        return int(row[0])

    def delete_patient(self, pseudonym: str) -> None:
        """Remove a patient, their studies, images, derived data, files, meeting cases and the
        reads of those cases."""
        with self._writing() as con:
            n_cases, n_reads = meetings_store.count_for_patient(con, pseudonym)
            gone = con.execute("DELETE FROM patients WHERE pseudonym = ?", (pseudonym,)).rowcount
            if gone:
                detail = f"with {n_cases} meeting cases and {n_reads} reads" if n_cases else ""
                self._record(con, "delete-patient", pseudonym, None, detail)
        self._discard_patient_files(pseudonym)

    def _record(self, con: Connection, action: str, pseudonym: str | None, study_id: int | None, detail: str) -> None:
        """An audit entry, written in the caller's transaction: it exists exactly when the change does."""
        con.execute(
            'INSERT INTO audit (at, "user", action, pseudonym, study_id, detail) VALUES (?, ?, ?, ?, ?, ?)',
            (utc_now(), self.user, action, pseudonym, study_id, detail),
        )

    def audit_log(self, *, limit: int | None = None, pseudonym: str | None = None) -> list[AuditEntry]:
        sql = 'SELECT id, at, "user", action, pseudonym, study_id, detail FROM audit'
        params: list[object] = []
        if pseudonym is not None:
            sql += " WHERE pseudonym = ?"
            params.append(pseudonym)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [
            AuditEntry(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], None if r[5] is None else int(r[5]), str(r[6]))
            for r in rows
        ]

    # -- case-review meetings: the SQL is in core.library.meetings_store --------------------
    # Every change is one transaction with its audit entry. An entry names the meeting, the
    # case and the patient, never a meeting's title or a read's comment (free text, which a
    # user might fill with a name).
    def create_meeting(self, title: str, date: str) -> int:
        title, date = check_title(title), check_date(date)
        with self._writing() as con:
            meeting_id = meetings_store.create(con, title, date, self.user, utc_now())
            self._record(con, "create-meeting", None, None, f"meeting {meeting_id} of {date}")
        return meeting_id

    def meetings(self) -> list[Meeting]:
        with self._connect() as con:
            return meetings_store.meetings(con)

    def meeting(self, meeting_id: int) -> Meeting:
        with self._connect() as con:
            return meetings_store.meeting(con, meeting_id)

    def meeting_case(self, case_id: int) -> MeetingCase:
        with self._connect() as con:
            return meetings_store.case(con, case_id)

    def add_to_meeting(
        self, meeting_id: int, pseudonym: str, study_id: int | None = None, hidden: Iterable[str] = HIDEABLE
    ) -> MeetingCase:
        kept = check_hidden(hidden)
        with self._writing() as con:
            c = meetings_store.add(con, meeting_id, pseudonym, study_id, kept)
            hides = ", ".join(h for h in HIDEABLE if h in kept) or "nothing"
            self._record(
                con,
                "add-to-meeting",
                c.pseudonym,
                c.study_id,
                f"meeting {c.meeting_id}, case {c.id} at position {c.position}; hides {hides}",
            )
        return c

    def move_case(self, meeting_id: int, case_id: int, new_position: int) -> MeetingCase:
        with self._writing() as con:
            c, was = meetings_store.move(con, meeting_id, case_id, new_position)
            self._record(
                con,
                "move-in-meeting",
                c.pseudonym,
                c.study_id,
                f"meeting {c.meeting_id}, case {c.id} from position {was} to {c.position}",
            )
        return c

    def remove_from_meeting(self, case_id: int) -> None:
        with self._writing() as con:
            c = meetings_store.remove(con, case_id)
            self._record(con, "remove-from-meeting", c.pseudonym, c.study_id, f"meeting {c.meeting_id}, case {c.id}")

    def set_hidden(self, case_id: int, hidden: Iterable[str]) -> MeetingCase:
        kept = check_hidden(hidden)
        with self._writing() as con:
            c = meetings_store.set_hidden(con, case_id, kept)
            hides = ", ".join(h for h in HIDEABLE if h in kept) or "nothing"
            self._record(
                con, "set-hidden", c.pseudonym, c.study_id, f"meeting {c.meeting_id}, case {c.id} hides {hides}"
            )
        return c

    def reveal(self, case_id: int, revealed: bool = True) -> MeetingCase:
        with self._writing() as con:
            c = meetings_store.reveal(con, case_id, revealed)
            action = "reveal-case" if revealed else "hide-case-again"
            self._record(con, action, c.pseudonym, c.study_id, f"meeting {c.meeting_id}, case {c.id}")
        return c

    def add_read(
        self,
        case_id: int,
        reader: str,
        read: str,
        confidence: int,
        agrees_with_model: bool | None = None,
        comment: str = "",
        model_id: str | None = None,
        model_version: str | None = None,
        model_label: str | None = None,
        model_probability: float | None = None,
        model_threshold: float | None = None,
    ) -> int:
        reader = check_reader(reader)
        level = check_confidence(confidence)
        text = check_comment(comment)
        mid, version = check_model(agrees_with_model, model_id, model_version)
        m_label, m_probability, m_threshold = check_model_read(mid, model_label, model_probability, model_threshold)
        with self._writing() as con:
            c = meetings_store.case(con, case_id)
            label = check_read(read, meetings_store.modalities(con, c))
            read_id, replaced = meetings_store.put_read(
                con,
                c.id,
                reader,
                label,
                level,
                agrees_with_model,
                text,
                mid,
                version,
                utc_now(),
                m_label,
                m_probability,
                m_threshold,
            )
            detail = f"meeting {c.meeting_id}, case {c.id}: read {read_id} by {reader}"
            if mid:
                detail += f", compared with {mid} {version}"
            if replaced:
                detail += " (replaces their earlier read)"
            self._record(con, "record-read", c.pseudonym, c.study_id, detail)
        return read_id

    def reads(self, meeting_id: int) -> list[Read]:
        with self._connect() as con:
            return meetings_store.reads(con, meeting_id)

    # -- reading --------------------------------------------------------------------------
    def counts(self) -> LibraryCounts:
        with self._connect() as con:
            n_patients = con.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
            n_studies = con.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
            n_images = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            by_modality = dict(con.execute("SELECT modality, COUNT(*) FROM studies GROUP BY modality").fetchall())
            by_label = dict(
                con.execute("SELECT COALESCE(label, 'Unknown'), COUNT(*) FROM patients GROUP BY label").fetchall()
            )
        return LibraryCounts(n_patients, n_studies, n_images, by_modality, by_label)

    _SUMMARY_SQL = """
        SELECT p.pseudonym, p.source, p.label, p.sex, p.age_years, p.outcome, p.survival,
               p.length_of_stay_days, p.went_icu, p.intubated,
               COUNT(s.id), SUM(CASE WHEN s.modality = 'X-ray' THEN 1 ELSE 0 END),
               SUM(CASE WHEN s.modality = 'CT' THEN 1 ELSE 0 END)
        FROM patients p LEFT JOIN studies s ON s.patient_id = p.id
    """

    @staticmethod
    def _summary(row: Sequence[object]) -> PatientSummary:
        return PatientSummary(
            pseudonym=str(row[0]),
            source=str(row[1]),
            label=row[2],  # type: ignore[arg-type]
            sex=row[3],  # type: ignore[arg-type]
            age_years=row[4],  # type: ignore[arg-type]
            outcome=row[5],  # type: ignore[arg-type]
            survival=_bool_or_none(row[6]),
            length_of_stay_days=row[7],  # type: ignore[arg-type]
            went_icu=_bool_or_none(row[8]),
            intubated=_bool_or_none(row[9]),
            n_studies=int(row[10] or 0),  # type: ignore[call-overload]
            n_xray=int(row[11] or 0),  # type: ignore[call-overload]
            n_ct=int(row[12] or 0),  # type: ignore[call-overload]
        )

    def patients(self, where: PatientFilter | None = None) -> list[PatientSummary]:
        f = where or PatientFilter()
        clauses: list[str] = []
        params: list[object] = []
        if f.labels is not None:
            clauses.append(f"p.label IN ({', '.join('?' * len(f.labels))})" if f.labels else "1 = 0")
            params.extend(f.labels)
        if f.outcomes is not None:
            clauses.append(f"p.outcome IN ({', '.join('?' * len(f.outcomes))})" if f.outcomes else "1 = 0")
            params.extend(f.outcomes)
        having = ["COUNT(s.id) >= ?"]
        params_having: list[object] = [f.min_studies]
        if f.max_studies is not None:
            having.append("COUNT(s.id) <= ?")
            params_having.append(f.max_studies)
        if f.modality is not None:
            having.append("SUM(CASE WHEN s.modality = ? THEN 1 ELSE 0 END) > 0")
            params_having.append(f.modality)
        sql = (
            self._SUMMARY_SQL
            + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
            + f" GROUP BY p.id HAVING {' AND '.join(having)} ORDER BY p.pseudonym"
        )
        with self._connect() as con:
            rows = con.execute(sql, (*params, *params_having)).fetchall()
        return [self._summary(r) for r in rows]

    def patient(self, pseudonym: str) -> Patient:
        with self._connect() as con:
            row = con.execute(self._SUMMARY_SQL + " WHERE p.pseudonym = ? GROUP BY p.id", (pseudonym,)).fetchone()
            if row is None:
                raise InvalidInputError(f"There is no patient {pseudonym} in the case library.")
            studies = con.execute(
                "SELECT s.id, s.modality, s.view, s.offset_onset_days, s.offset_admission_days, s.label, s.note,"
                " s.findings_json, s.burned_in FROM studies s JOIN patients p ON p.id = s.patient_id WHERE p.pseudonym = ?",
                (pseudonym,),
            ).fetchall()
            ids = [s[0] for s in studies]
            images: dict[int, list[ImageRecord]] = {i: [] for i in ids}
            if ids:
                for r in con.execute(
                    "SELECT id, study_id, kind, path, n_files, width, height, depth FROM images"
                    f" WHERE study_id IN ({', '.join('?' * len(ids))}) ORDER BY id",
                    ids,
                ):
                    images[r[1]].append(ImageRecord(*r))
        out = [
            Study(
                id=s[0],
                patient_pseudonym=pseudonym,
                modality=s[1],
                view=s[2],
                offset_onset_days=s[3],
                offset_admission_days=s[4],
                label=s[5],
                note=s[6],
                findings=None if s[7] is None else json.loads(s[7]),
                images=tuple(images[s[0]]),
                burned_in=s[8],
            )
            for s in studies
        ]

        # Time order: days since admission, else since onset; studies without any offset last.
        def when(st: Study) -> tuple[int, float, int]:
            day = st.day
            return (day is None, 0.0 if day is None else float(day), st.id)

        return Patient(self._summary(row), tuple(sorted(out, key=when)))

    def thumbnail(self, image_id: int) -> bytes | None:
        with self._connect() as con:
            row = con.execute("SELECT thumbnail FROM images WHERE id = ?", (image_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def image_record(self, image_id: int) -> ImageRecord:
        with self._connect() as con:
            row = con.execute(
                "SELECT id, study_id, kind, path, n_files, width, height, depth FROM images WHERE id = ?", (image_id,)
            ).fetchone()
        if row is None:
            raise InvalidInputError(f"There is no image {image_id} in the case library.")
        return ImageRecord(*row)

    def image_refs(self, kinds: Sequence[str] | None = None) -> list[ImageRef]:
        sql = (
            "SELECT i.id, i.study_id, p.pseudonym, i.kind, s.modality FROM images i"
            " JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id"
        )
        params: tuple[str, ...] = ()
        if kinds is not None:
            sql += f" WHERE i.kind IN ({', '.join('?' * len(kinds))})" if kinds else " WHERE 1 = 0"
            params = tuple(kinds)
        with self._connect() as con:
            rows = con.execute(sql + " ORDER BY i.id", params).fetchall()
        return [ImageRef(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

    # -- derived data ---------------------------------------------------------------------
    def put_pixel_digests(self, digests: dict[int, str]) -> None:
        with self._writing() as con:
            con.executemany(
                "INSERT INTO pixel_digests (image_id, digest) VALUES (?, ?)"
                " ON CONFLICT (image_id) DO UPDATE SET digest = excluded.digest",
                [(int(k), str(v)) for k, v in digests.items()],
            )

    def images_with_pixel_digest(self, digest: str) -> list[int]:
        with self._connect() as con:
            rows = con.execute("SELECT image_id FROM pixel_digests WHERE digest = ? ORDER BY image_id", (digest,))
            return [int(r[0]) for r in rows]

    def pixel_digest_of(self, image_id: int) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT digest FROM pixel_digests WHERE image_id = ?", (image_id,)).fetchone()
        return None if row is None else str(row[0])

    def drop_embeddings(self, model_id: str, keep_version: str) -> int:
        with self._writing() as con:
            cur = con.execute(
                "DELETE FROM embeddings WHERE model_id = ? AND model_version != ?", (model_id, keep_version)
            )
            return int(cur.rowcount)

    def put_embeddings(self, model_id: str, model_version: str, vectors: dict[int, np.ndarray]) -> None:
        rows = []
        for image_id, v in vectors.items():
            arr = np.ascontiguousarray(v, dtype=np.float32).ravel()
            rows.append((int(image_id), model_id, model_version, int(arr.size), arr.tobytes()))
        with self._writing() as con:
            con.executemany(
                "INSERT INTO embeddings (image_id, model_id, model_version, dim, vector) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (image_id, model_id, model_version)"
                " DO UPDATE SET dim = excluded.dim, vector = excluded.vector",
                rows,
            )

    def embeddings(
        self, model_id: str, model_version: str, image_ids: Sequence[int] | None = None
    ) -> tuple[list[int], np.ndarray]:
        select = "SELECT image_id, dim, vector FROM embeddings WHERE model_id = ? AND model_version = ?"
        with self._connect() as con:
            if image_ids is None:
                rows = con.execute(select + " ORDER BY image_id", (model_id, model_version)).fetchall()
            else:
                wanted = sorted({int(i) for i in image_ids})
                rows = []
                for at in range(0, len(wanted), _IDS_PER_QUERY):
                    part = wanted[at : at + _IDS_PER_QUERY]
                    rows += con.execute(
                        select + f" AND image_id IN ({', '.join('?' * len(part))}) ORDER BY image_id",
                        (model_id, model_version, *part),
                    ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = {r[1] for r in rows}
        if len(dims) != 1:
            raise LibraryError(f"Embeddings of {model_id} {model_version} have different lengths.")
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dims.pop())
        return [int(r[0]) for r in rows], matrix.copy()

    def embedding_ids(self, model_id: str, model_version: str) -> list[int]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT image_id FROM embeddings WHERE model_id = ? AND model_version = ? ORDER BY image_id",
                (model_id, model_version),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def count_embeddings(self, model_id: str, model_version: str) -> int:
        with self._connect() as con:
            row = con.execute(
                "SELECT COUNT(*) FROM embeddings WHERE model_id = ? AND model_version = ?", (model_id, model_version)
            ).fetchone()
        return int(row[0])

    def put_scores(self, model_id: str, model_version: str, name: str, values: dict[int, float]) -> None:
        rows = [(int(k), model_id, model_version, name, float(v)) for k, v in values.items()]
        with self._writing() as con:
            con.executemany(
                "INSERT INTO scores (study_id, model_id, model_version, name, value) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (study_id, model_id, model_version, name) DO UPDATE SET value = excluded.value",
                rows,
            )

    def scores(self, model_id: str, model_version: str, name: str) -> dict[int, float]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT study_id, value FROM scores WHERE model_id = ? AND model_version = ? AND name = ?",
                (model_id, model_version, name),
            ).fetchall()
        return {int(k): float(v) for k, v in rows}
