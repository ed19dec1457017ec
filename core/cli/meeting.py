"""``python -m core meeting ...``: prepare case-review meetings and record the room's reads.

A meeting lives in the case library (see :mod:`core.review.meetings`); every change made here is
recorded in the library's audit log under the account that ran the command.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from core.cli.common import device_arg, library_arg, open_existing, registry_of, weights_arg
from core.errors import InvalidInputError
from core.review.meetings import HIDEABLE, Meeting, check_date, reads_by_case, today
from core.review.minute import meeting_minute, threshold_text
from core.review.model_read import model_read
from core.review.summary import MeetingSummary, QuestionSummary, kappa_text, meeting_summary, reads_csv, share_text
from core.review.uploads import add_upload_to_meeting


def _hideable(text: str) -> str:
    """``--show`` item: one of HIDEABLE, with ``model-outputs`` or ``model_outputs`` for the spaced one."""
    return text.strip().lower().replace("-", " ").replace("_", " ")


def _meeting_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number (meeting, case and position are numbers)") from None


def _show_arg(p: argparse.ArgumentParser) -> None:
    """``--show ITEM ...``: what a case added to a meeting shows from the start."""
    p.add_argument(
        "--show",
        nargs="+",
        type=_hideable,
        choices=HIDEABLE,
        default=(),
        metavar="ITEM",
        help=f"shown from the start, not hidden until revealed: any of {', '.join(HIDEABLE)} (default: hide all)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("meeting")
    cmd = p.add_subparsers(dest="meeting_command", required=True, metavar="MEETING_COMMAND")

    create = cmd.add_parser("create", help="create an empty meeting")
    create.add_argument("--title", required=True)
    create.add_argument("--date", default=None, help="the meeting's day, YYYY-MM-DD (default: today)")
    create.add_argument("--json", action="store_true")
    library_arg(create)
    create.set_defaults(func=run_create)

    add = cmd.add_parser("add", help="add a patient (or one of their studies) at the end of a meeting")
    add.add_argument("meeting_id", type=_meeting_id, metavar="MEETING_ID")
    add.add_argument("pseudonym", metavar="PSEUDONYM")
    add.add_argument("--study", type=_meeting_id, default=None, help="only this study of the patient")
    _show_arg(add)
    add.add_argument("--json", action="store_true")
    library_arg(add)
    add.set_defaults(func=run_add)

    upload = cmd.add_parser(
        "add-upload",
        help="store an image you have reviewed (one X-ray, or the DICOM slices of one CT series) in the library, "
        "de-identified, and put it last in a meeting",
    )
    upload.add_argument("meeting_id", type=_meeting_id, metavar="MEETING_ID")
    upload.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="the image file, or the series' files or folder"
    )
    upload.add_argument("--modality", choices=("X-ray", "CT"), required=True)
    upload.add_argument("--label", default=None, help="the reviewed diagnosis: Normal, 'Viral pneumonia' or COVID-19")
    upload.add_argument("--admission-day", type=float, default=None, help="days since admission (optional)")
    upload.add_argument("--patient", default=None, help="a library patient's pseudonym (a follow-up); default: new")
    upload.add_argument("--note", default=None, help="free text; never a patient's name")
    _show_arg(upload)
    upload.add_argument("--json", action="store_true")
    library_arg(upload)
    upload.set_defaults(func=run_add_upload)

    ls = cmd.add_parser("list", help="every meeting, the latest first")
    ls.add_argument("--json", action="store_true", help="one JSON object per meeting")
    library_arg(ls)
    ls.set_defaults(func=run_list)

    show = cmd.add_parser("show", help="a meeting's cases in order, what each hides, and its reads")
    show.add_argument("meeting_id", type=_meeting_id, metavar="MEETING_ID")
    show.add_argument("--json", action="store_true")
    library_arg(show)
    show.set_defaults(func=run_show)

    move = cmd.add_parser("move", help="move a case to another position (1 = first)")
    move.add_argument("meeting_id", type=_meeting_id, metavar="MEETING_ID")
    move.add_argument("case_id", type=_meeting_id, metavar="CASE_ID")
    move.add_argument("position", type=_meeting_id, metavar="POSITION")
    move.add_argument("--json", action="store_true")
    library_arg(move)
    move.set_defaults(func=run_move)

    read = cmd.add_parser("read", help="record a reader's read of a meeting case (replaces their earlier read)")
    read.add_argument("case_id", type=_meeting_id, metavar="CASE_ID")
    read.add_argument("--reader", required=True, help="the reader's name (staff, not a patient)")
    read.add_argument(
        "--read",
        required=True,
        help="an X-ray label (Normal, 'Viral pneumonia', COVID-19) or for a CT: COVID, 'not COVID'",
    )
    read.add_argument("--confidence", required=True, type=_meeting_id, help="1 (a guess) to 5 (certain)")
    read.add_argument("--agrees", choices=("yes", "no"), default=None, help="whether the reader agrees with --model")
    read.add_argument("--comment", default="", help="free text; never a patient's name")
    read.add_argument(
        "--model",
        default=None,
        help="the model the read is compared with: it reads the case now, and its version, label and probability "
        "are stored with the read",
    )
    read.add_argument("--json", action="store_true")
    weights_arg(read)
    device_arg(read)
    library_arg(read)
    read.set_defaults(func=run_read)

    summary = cmd.add_parser(
        "summary", help="agreement of the readers with the model, with the truth and with each other; disagreements"
    )
    summary.add_argument("meeting_ids", nargs="+", type=_meeting_id, metavar="MEETING_ID")
    summary.add_argument("--json", action="store_true")
    library_arg(summary)
    summary.set_defaults(func=run_summary)

    export = cmd.add_parser(
        "export",
        help="a meeting's reads as CSV (one row per read) and/or its minute as one HTML file (no patient name or date)",
    )
    export.add_argument("meeting_id", type=_meeting_id, metavar="MEETING_ID")
    export.add_argument("--csv", type=Path, default=None, metavar="PATH", help="the CSV file of the reads to write")
    export.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="PATH",
        help="the minute to write: one self-contained HTML file of the summary, the cases with their images and "
        "Grad-CAM maps (the models run here), what each hid, and the reads",
    )
    weights_arg(export)
    device_arg(export)
    library_arg(export)
    export.set_defaults(func=run_export)


def _hides(items: frozenset[str]) -> str:
    return ", ".join(h for h in HIDEABLE if h in items) or "nothing"


def run_create(args: argparse.Namespace) -> int:
    date = today() if args.date is None else check_date(args.date)
    library = open_existing(args)
    meeting = library.meeting(library.create_meeting(args.title, date))
    if args.json:
        print(json.dumps(meeting.as_dict()))
    else:
        print(f"meeting {meeting.id} created: {meeting.title} ({meeting.date})")
    return 0


def run_add(args: argparse.Namespace) -> int:
    library = open_existing(args)
    hidden = [h for h in HIDEABLE if h not in args.show]
    case = library.add_to_meeting(args.meeting_id, args.pseudonym, args.study, hidden)
    if args.json:
        print(json.dumps(case.as_dict()))
    else:
        what = case.pseudonym if case.study_id is None else f"{case.pseudonym} study {case.study_id}"
        print(
            f"case {case.id} ({what}) added to meeting {case.meeting_id} at position {case.position}; "
            f"hidden until revealed: {_hides(case.hidden)}"
        )
    return 0


def _upload_files(paths: list[Path]) -> list[tuple[str, bytes]]:
    """Each file named, and every file in each folder named (recursively), as (name, bytes)."""
    files: list[tuple[str, bytes]] = []
    for path in paths:
        try:
            found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            files += [(p.name, p.read_bytes()) for p in found]
        except OSError as e:
            raise InvalidInputError(f"Could not read {path}: {e.strerror or e}.") from e
    if not files:
        raise InvalidInputError(f"No file in {', '.join(map(str, paths))}.")
    return files


def run_add_upload(args: argparse.Namespace) -> int:
    library = open_existing(args)
    got = add_upload_to_meeting(
        library,
        args.meeting_id,
        _upload_files(args.paths),
        modality=args.modality,
        label=args.label,
        note=args.note,
        offset_admission_days=args.admission_day,
        patient=args.patient,
        hidden=[h for h in HIDEABLE if h not in args.show],
    )
    case = got.case
    if args.json:
        print(json.dumps(case.as_dict() | {"already_in_library": got.already_in_library, "warning": got.warning}))
    else:
        stored = "in the library already" if got.already_in_library else "stored in the library, de-identified"
        print(
            f"case {case.id} ({case.pseudonym} study {case.study_id}, {stored}) added to meeting {case.meeting_id} "
            f"at position {case.position}; hidden until revealed: {_hides(case.hidden)}"
        )
        if got.warning:
            print(f"warning: {got.warning}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    library = open_existing(args)
    meetings = library.meetings()
    for m in meetings:
        n_reads = len(library.reads(m.id))
        if args.json:
            row = {k: v for k, v in m.as_dict().items() if k != "cases"}
            print(json.dumps({**row, "n_cases": len(m.cases), "n_reads": n_reads}))
        else:
            print(f"{m.id:>4}  {m.date}  {m.title}  ({len(m.cases)} cases, {n_reads} reads)")
    if not args.json:
        print(f"{len(meetings)} meetings")
    return 0


def _shown(library, meeting: Meeting) -> dict:  # noqa: ANN001 - a CaseLibrary
    """A meeting as ``show --json`` prints it: each case with its reads."""
    by_case = reads_by_case(library.reads(meeting.id))
    out = meeting.as_dict()
    out["cases"] = [{**c.as_dict(), "reads": [r.as_dict() for r in by_case.get(c.id, [])]} for c in meeting.cases]
    return out


def run_show(args: argparse.Namespace) -> int:
    library = open_existing(args)
    meeting = library.meeting(args.meeting_id)
    if args.json:
        print(json.dumps(_shown(library, meeting)))
        return 0
    by_case = reads_by_case(library.reads(meeting.id))
    print(f"meeting {meeting.id}: {meeting.title} ({meeting.date}), created by {meeting.created_by}")
    for c in meeting.cases:
        what = "whole patient" if c.study_id is None else f"study {c.study_id}"
        state = "revealed" if c.revealed else "not revealed"
        print(f"  {c.position:>2}. case {c.id:<5d} {c.pseudonym:12s} {what:13s} hides {_hides(c.hidden)} ({state})")
        for r in by_case.get(c.id, []):
            agrees = {True: "agrees", False: "disagrees", None: "-"}[r.agrees_with_model]
            model = f" with {r.model_id} {r.model_version}" if r.model_id else ""
            print(f"        {r.reader}: {r.read}, confidence {r.confidence}, {agrees}{model}  {r.comment}".rstrip())
    print(f"{len(meeting.cases)} cases")
    return 0


def run_move(args: argparse.Namespace) -> int:
    library = open_existing(args)
    case = library.move_case(args.meeting_id, args.case_id, args.position)
    if args.json:
        print(json.dumps(case.as_dict()))
    else:
        print(f"case {case.id} is now at position {case.position} of meeting {case.meeting_id}")
    return 0


def run_read(args: argparse.Namespace) -> int:
    if args.agrees is not None and args.model is None:
        raise InvalidInputError("--agrees needs --model: the model the reader agrees or disagrees with.")
    library = open_existing(args)
    agrees = None if args.agrees is None else args.agrees == "yes"
    model = None
    if args.model is not None:  # the model's read of the case, stored with the reader's
        model = model_read(library, library.meeting_case(args.case_id), registry_of(args), args.model)
    read_id = library.add_read(
        args.case_id,
        args.reader,
        args.read,
        args.confidence,
        agrees,
        args.comment,
        args.model,
        None if model is None else model.model_version,
        None if model is None else model.label,
        None if model is None else model.probability,
        None if model is None else model.threshold,
    )
    if args.json:
        meeting_id = library.meeting_case(args.case_id).meeting_id
        print(json.dumps(next(r for r in library.reads(meeting_id) if r.id == read_id).as_dict()))
    else:
        print(f"read {read_id} recorded for case {args.case_id}")
        if model is not None:
            print(f"  {model.reason}")
    return 0


def _print_question(q: QuestionSummary) -> None:
    print(f"\n{q.question} ({', '.join(q.labels)})")
    if q.note:
        print(f"  {q.note}")
    binary = q.pooled.sensitivity is not None
    for f in (*q.readers, q.pooled):
        print(f"  {f.reader}: {f.n_reads} reads")
        print(f"    kappa with the model: {kappa_text(f.vs_model)}")
        if f.vs_model.reason and f is not q.pooled:
            print(f"      ({f.vs_model.reason})")
        print(f"    accuracy: reader {share_text(f.accuracy)}; model {share_text(f.model_accuracy)}")
        if binary:
            print(
                f"    sensitivity for COVID: reader {share_text(f.sensitivity)}; model {share_text(f.model_sensitivity)}"
            )
            print(
                f"    specificity for COVID: reader {share_text(f.specificity)}; model {share_text(f.model_specificity)}"
            )
    pooled = q.pooled.vs_model
    if pooled.reason:
        print(f"  note on the pooled kappa: {pooled.reason}")
    b = q.between_readers
    print(f"  between readers (Fleiss' kappa): {kappa_text(b)}" + (f"; {b.reason}" if b.reason else ""))


def _print_summary(s: MeetingSummary) -> None:
    print(f"meetings {', '.join(str(m) for m in s.meeting_ids)}: {'; '.join(s.titles)}")
    print(f"{s.n_cases} cases, {s.n_reads} reads by {len(s.readers)} readers")
    print(s.truth_note)
    print(s.models_note)
    for q in s.questions:
        _print_question(q)
    print(f"\ncases, the {len(s.disagreements)} where the room and the model disagree first:")
    for c in s.cases:
        mark = "DISAGREE" if c.disagrees else "        "
        what = "whole patient" if c.study_id is None else f"study {c.study_id}"
        model = "-" if c.model_label is None else c.model_label
        if c.model_label is not None and c.model_probability is not None:
            model += f" {c.model_probability:.0%} ({threshold_text(c.model_threshold)})"
        truth = "unknown" if c.truth is None else f"{c.truth} ({c.truth_source})"
        room = c.room_read or ("no reads" if not c.reads else "no majority")
        print(
            f"  {mark} meeting {c.meeting_id} case {c.position:>2} {c.pseudonym} {what}: room {room}; "
            f"model {model}; truth {truth}"
        )


def run_summary(args: argparse.Namespace) -> int:
    library = open_existing(args)
    summary = meeting_summary(library, args.meeting_ids)
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        _print_summary(summary)
    return 0


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise InvalidInputError(f"Could not write {path}: {e.strerror}.") from e


def run_export(args: argparse.Namespace) -> int:
    if args.csv is None and args.html is None:
        raise InvalidInputError("Name what to write: --csv PATH (the reads), --html PATH (the minute), or both.")
    for path in (args.csv, args.html):  # refused before the models run, not after
        if path is not None and not path.parent.is_dir():
            raise InvalidInputError(f"Could not write {path}: there is no folder {path.parent}.")
    library = open_existing(args)
    if args.csv is not None:
        _write(args.csv, reads_csv(library, args.meeting_id))
        print(f"{len(library.reads(args.meeting_id))} reads of meeting {args.meeting_id} written to {args.csv}")
    if args.html is not None:
        start = time.perf_counter()
        text = meeting_minute(library, args.meeting_id, registry_of(args))
        _write(args.html, text)
        print(
            f"minute of meeting {args.meeting_id} ({len(library.meeting(args.meeting_id).cases)} cases, "
            f"{len(text.encode('utf-8')) / 1e6:.1f} MB) written to {args.html} in {time.perf_counter() - start:.0f} s"
        )
    return 0
