"""``python -m core library ...``: import datasets into a case library and look inside it."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from core.cli.common import (
    cli_user,
    embedding_model_arg,
    library_arg,
    load_embedding_model,
    load_score_model,
    open_existing,
    open_library_of,
    score_model_arg,
)
from core.cli.progress import LazyBar
from core.demo.cohort import DEFAULT_PATIENTS
from core.errors import InvalidInputError
from core.labels import canonical_label
from core.library.demo import build_demo_library
from core.library.importers import import_source
from core.library.migrate import migrate_library
from core.library.records import ImageRecord, PatientFilter
from core.library.sql import SqlLibrary
from core.library.store import CaseLibrary, MissingLibraryError, SqliteLibrary, open_library
from core.search.embeddings import index_library
from core.trajectory.scores import score_library


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("library")
    lib = p.add_subparsers(dest="library_command", required=True, metavar="LIBRARY_COMMAND")

    imp = lib.add_parser("import", help="import a dataset (de-identified)")
    imp.add_argument("src", type=Path, help="dataset folder (cohen, folders) or CSV manifest (csv)")
    imp.add_argument("--format", required=True, choices=("cohen", "folders", "csv"))
    imp.add_argument("--include-lateral", action="store_true", help="cohen: also import lateral views")
    imp.add_argument("--skip-ct", action="store_true", help="cohen: skip CT rows")
    imp.add_argument("--source", default=None, help="name that keeps this dataset's patient ids apart from others'")
    imp.add_argument("--workers", type=int, default=None, help="processes preparing images (default: CPU count)")
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    library_arg(imp)
    imp.set_defaults(func=run_import)

    demo = lib.add_parser(
        "build-demo", help="draw the demo cohort straight into a library (what the app does on first launch)"
    )
    demo.add_argument("--patients", type=int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--workers", type=int, default=None)
    library_arg(demo)
    demo.set_defaults(func=run_build_demo)

    ls = lib.add_parser("list", help="list patients")
    ls.add_argument("--label", action="append", help="Normal, 'Viral pneumonia' or COVID-19 (repeatable)")
    ls.add_argument("--outcome", action="append", choices=("discharged", "died", "in hospital"))
    ls.add_argument("--modality", choices=("X-ray", "CT"))
    ls.add_argument("--min-studies", type=int, default=0)
    ls.add_argument("--json", action="store_true", help="one JSON object per patient")
    library_arg(ls)
    ls.set_defaults(func=run_list)

    show = lib.add_parser("show", help="one patient's timeline")
    show.add_argument("pseudonym")
    show.add_argument("--json", action="store_true")
    library_arg(show)
    show.set_defaults(func=run_show)

    index = lib.add_parser("index", help="compute the search embeddings of every image that lacks them (incremental)")
    index.add_argument("--json", action="store_true", help="print the report as JSON")
    embedding_model_arg(index)
    library_arg(index)
    index.set_defaults(func=run_index)

    score = lib.add_parser("score", help="score every scan with a model for trajectories (incremental)")
    score.add_argument("--json", action="store_true", help="print the report as JSON")
    score_model_arg(score)
    library_arg(score)
    score.set_defaults(func=run_score)

    stats = lib.add_parser("stats", help="how many patients, studies and images")
    stats.add_argument("--json", action="store_true")
    library_arg(stats)
    stats.set_defaults(func=run_stats)

    audit = lib.add_parser("audit", help="the audit log: who added or removed which case, and when (newest first)")
    audit.add_argument("--pseudonym", default=None, help="only this patient's entries")
    audit.add_argument("--limit", type=int, default=None, help="at most this many entries")
    audit.add_argument("--json", action="store_true", help="one JSON object per entry")
    library_arg(audit)
    audit.set_defaults(func=run_audit)

    move = lib.add_parser(
        "migrate",
        help="copy a library into another, empty one (e.g. a folder into PostgreSQL) and compare them: "
        "the rows of every table and a checksum of every image",
    )
    move.add_argument("--from", dest="source", required=True, help="the library to copy (a folder or an address)")
    move.add_argument(
        "--to", dest="target", required=True, help="an empty library: postgresql://user@host:port/database, or a folder"
    )
    move.add_argument("--json", action="store_true", help="print the report as JSON")
    move.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    try:
        source = open_library(args.source, create=False)
    except MissingLibraryError as e:
        raise InvalidInputError(str(e)) from e
    target = open_library(args.target, create=True).acting(cli_user())
    if not isinstance(source, SqlLibrary) or not isinstance(target, SqlLibrary):
        raise InvalidInputError("Only SQLite and PostgreSQL libraries can be migrated.")
    with LazyBar("copying", "image") as bar:
        report = migrate_library(source, target, progress=bar)
    if args.json:
        print(json.dumps({**report.as_dict(), "ok": report.ok}))
    else:
        rows = sum(s for s, _ in report.rows.values())
        print(
            f"copied {source.location} into {target.location}: {rows} rows in {len(report.rows)} tables, "
            f"{report.images_checked} images ({report.files_checked} files) compared by SHA-256 "
            f"in {report.seconds:.1f} s"
        )
        for problem in report.problems:
            print(f"  difference: {problem}")
    if not report.ok:
        print(f"error: the copy differs from {source.location} in {len(report.problems)} ways (see above).")
        return 1
    return 0


def run_index(args: argparse.Namespace) -> int:
    library = open_existing(args)
    model = load_embedding_model(args)
    with LazyBar(f"embedding ({model.id} on {model.device.type})", "image") as bar:
        report = index_library(library, model, progress=bar)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(
            f"{report.added} images embedded, {report.already} already had {model.id} embeddings "
            f"({report.total} in all)"
            + (f"; {report.dropped_stale} stale embeddings of older weights removed" if report.dropped_stale else "")
        )
        for problem in report.problems:
            print(f"  skipped {problem}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    library = open_existing(args)
    model = load_score_model(args)
    with LazyBar(f"scoring ({model.id} on {model.device.type})", "scan") as bar:
        report = score_library(library, model, progress=bar)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"{report.added} scans scored, {report.already} already had {model.id} scores ({report.total} in all)")
        for problem in report.problems:
            print(f"  skipped {problem}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    if not Path(args.src).exists():
        raise InvalidInputError(f"{args.src} does not exist.")
    library = open_library_of(args, create=True)
    options: dict[str, object] = {"workers": args.workers, "source": args.source or args.format}
    if args.format == "cohen":
        options.update(include_lateral=args.include_lateral, include_ct=not args.skip_ct)
    elif args.include_lateral or args.skip_ct:
        raise InvalidInputError("--include-lateral and --skip-ct apply to --format cohen only.")
    with LazyBar("importing", "study") as bar:
        report = import_source(library, args.format, args.src, progress=bar, **options)
    if args.json:
        print(json.dumps({"library": library.location, **report.as_dict()}))
    else:
        print(
            f"added {report.added_studies} studies of {report.added_patients} new patients to {library.location}; "
            f"{report.duplicates} already there, {report.skipped_by_option} skipped by option, "
            f"{len(report.problems)} problems, {len(report.warnings)} warnings"
        )
        for line in report.problems:
            print(f"  {line}")
        for line in report.warnings:
            print(f"  warning: {line}")
    return 0


def run_build_demo(args: argparse.Namespace) -> int:
    n = args.patients or DEFAULT_PATIENTS
    with LazyBar("building", "patient") as bar:
        try:
            report = build_demo_library(args.library, n, args.seed, workers=args.workers, progress=bar)
        except ValueError as e:
            raise InvalidInputError(str(e)) from e
    r = report.imported
    print(
        f"demo library at {report.library}: {r.added_studies} studies of {report.n_patients} patients "
        f"added in {report.seconds:.1f} s ({r.duplicates} already there)"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    library = open_existing(args)
    labels = tuple(canonical_label(x) for x in args.label) if args.label else None
    where = PatientFilter(
        labels=labels,
        outcomes=tuple(args.outcome) if args.outcome else None,
        modality=args.modality,
        min_studies=args.min_studies,
    )
    rows = library.patients(where)
    for p in rows:
        if args.json:
            print(json.dumps(asdict(p)))
        else:
            print(
                f"{p.pseudonym:12s} {p.label or 'unlabelled':16s} {p.sex or '-':2s} "
                f"{'' if p.age_years is None else int(p.age_years):>3} {p.outcome or '-':12s} "
                f"{p.n_xray} X-ray, {p.n_ct} CT"
            )
    if not args.json:
        print(f"{len(rows)} patients")
    return 0


def _image_where(library: CaseLibrary, image: ImageRecord) -> str:
    """Where an image's files are: a file or folder for a SQLite library, else its name in the
    database that holds them."""
    if isinstance(library, SqliteLibrary):
        return str(library.image_path(image))
    return f"{image.path} (in the database)"


def run_show(args: argparse.Namespace) -> int:
    library = open_existing(args)
    patient = library.patient(args.pseudonym)
    if args.json:
        out = asdict(patient.summary)
        out["studies"] = [
            {
                **{k: v for k, v in asdict(s).items() if k != "images"},
                "images": [
                    {"id": i.id, "kind": i.kind, "path": _image_where(library, i), "n_files": i.n_files}
                    for i in s.images
                ],
            }
            for s in patient.studies
        ]
        print(json.dumps(out))
        return 0
    s = patient.summary
    print(f"{s.pseudonym}: {s.label or 'unlabelled'}, {s.sex or '-'}, age {s.age_years}, outcome {s.outcome or '-'}")
    for st in patient.studies:
        day = "?" if st.day is None else f"{st.day:g}"
        print(f"  day {day:>4} {st.modality:5s} {st.view or '':9s} study {st.id:<6d} {st.note or ''}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    library = open_existing(args)
    c = library.counts()
    if args.json:
        print(json.dumps({"library": library.location, **asdict(c)}))
    else:
        print(f"{library.location}: {c.patients} patients, {c.studies} studies, {c.images} images")
        print("  by modality: " + ", ".join(f"{k} {v}" for k, v in sorted(c.by_modality.items())))
        print("  by label: " + ", ".join(f"{k} {v}" for k, v in sorted(c.by_label.items())))
    return 0


def run_audit(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be 1 or more, got {args.limit}.")
    entries = open_existing(args).audit_log(limit=args.limit, pseudonym=args.pseudonym)
    for e in entries:
        if args.json:
            print(json.dumps(e.as_dict()))
        else:
            where = " ".join(x for x in (e.pseudonym or "", "" if e.study_id is None else f"study {e.study_id}") if x)
            print(f"{e.at}  {e.user}  {e.action}  {where}  {e.detail}".rstrip())
    if not args.json:
        print(f"{len(entries)} entries")
    return 0
