"""``python -m core similar`` and ``python -m core evaluate-retrieval``: similar-case search
over the case library (embeddings from ``python -m core library index``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli.common import embedding_model_arg, library_arg, load_embedding_model, open_existing
from core.errors import InvalidInputError
from core.io.images import MAX_BYTES, read_xray
from core.labels import canonical_label
from core.library.records import OUTCOMES
from core.search.embeddings import EMBEDDABLE_KINDS
from core.search.evaluate import evaluate_retrieval
from core.search.index import AUTO_IVF_FROM
from core.search.similar import SEARCH_BACKENDS, UNLABELLED, SearchFilter, find_similar, open_index, resolve_case

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("similar")
    p.add_argument(
        "query",
        metavar="IMAGE_OR_CASE",
        help="an X-ray file, or a library case: PSEUDONYM, PSEUDONYM@DAY, study:ID or image:ID",
    )
    p.add_argument("--k", type=int, default=5, help="how many patients (default 5)")
    p.add_argument(
        "--include-query-patient",
        action="store_true",
        help="also return the query patient's other studies (never the query image itself)",
    )
    p.add_argument("--label", action="append", help="only patients with this diagnosis, or Unlabelled (repeatable)")
    p.add_argument("--outcome", action="append", choices=OUTCOMES, help="only patients with this outcome (repeatable)")
    p.add_argument("--modality", choices=("X-ray", "CT"), help="only patients with a study of this modality")
    p.add_argument(
        "--backend",
        choices=SEARCH_BACKENDS,
        default="auto",
        help="where to search: auto (default: in the library's own vector index, pgvector in PostgreSQL, when it "
        f"has one; else the exact scan, or the approximate IVF index from {AUTO_IVF_FROM:,} images), or one by name",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    embedding_model_arg(p)
    library_arg(p)
    p.set_defaults(func=run_similar)

    ev = sub.add_parser("evaluate-retrieval")
    ev.add_argument("--k", type=int, default=5)
    ev.add_argument(
        "--max-queries", type=int, default=None, help="query with a random subset of this many images (at least 1)"
    )
    ev.add_argument("--json", action="store_true")
    embedding_model_arg(ev)
    library_arg(ev)
    ev.set_defaults(func=run_evaluate)


def _note_unindexed(library, model, index) -> None:
    total = len(library.image_refs(EMBEDDABLE_KINDS[model.card.input_kind]))
    if total > len(index):
        print(
            f"note: {total - len(index)} library images have no {model.id} embedding yet and are not searched; "
            "run `python -m core library index`",
            file=sys.stderr,
        )


def run_similar(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise InvalidInputError("--k must be at least 1.")
    library = open_existing(args)
    model = load_embedding_model(args)
    index = open_index(library, model, args.backend)
    _note_unindexed(library, model, index)
    where = SearchFilter(
        labels=tuple(UNLABELLED if x.strip().lower() == "unlabelled" else canonical_label(x) for x in args.label)
        if args.label
        else None,
        outcomes=tuple(args.outcome) if args.outcome else None,
        modality=args.modality,
    )
    path = Path(args.query)
    query: dict[str, object]
    if path.is_file():
        if path.stat().st_size > MAX_BYTES:
            raise InvalidInputError(f"{path.name} is larger than {MAX_BYTES // 2**20} MB.")
        query = {"image": read_xray(path.read_bytes(), path.name)}
    elif path.is_dir():
        raise InvalidInputError(f"{path} is a folder; give one X-ray file or a library case.")
    elif "/" in args.query or "\\" in args.query or path.suffix.lower() in _IMAGE_SUFFIXES:
        raise InvalidInputError(f"There is no file {path}.")
    else:
        query = {"case_image_id": resolve_case(library, args.query)}
    results = find_similar(
        library,
        model,
        k=args.k,
        include_query_patient=args.include_query_patient,
        where=where,
        index=index,
        **query,  # type: ignore[arg-type]
    )
    if args.json:
        print(json.dumps(results.as_dict()))
        return 0
    q = results.query
    if q.recognised:
        print(
            f"query: library image {q.image_id} of patient {q.patient_pseudonym}"
            + (" (same pixels)" if q.source == "upload" else "")
        )
    else:
        print("query: an image not in the library")
    print(
        f"{len(results.results)} most similar of {results.n_patients_searched} patients ({results.model_id}, cosine):"
    )
    for r in results.results:
        s = r.patient.summary
        m = r.matched_study
        day = "?" if m.day is None else f"{m.day:g}"
        print(
            f"  {r.pseudonym:12s} {r.similarity:.4f}  {s.label or 'unlabelled':16s} {s.outcome or '-':12s} matched day {day} {m.modality}"
        )
        for st in r.patient.studies:
            mark = "*" if st.id == r.matched_study_id else " "
            when = "?" if st.day is None else f"{st.day:g}"
            print(f"     {mark} day {when:>4} {st.modality:5s} study {st.id}: {(st.note or '')[:90]}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise InvalidInputError("--k must be at least 1.")
    if args.max_queries is not None and args.max_queries < 1:
        raise InvalidInputError("--max-queries must be at least 1.")
    library = open_existing(args)
    model = load_embedding_model(args)
    index = open_index(library, model)
    _note_unindexed(library, model, index)
    ev = evaluate_retrieval(library, index, k=args.k, max_queries=args.max_queries)
    if args.json:
        print(json.dumps(ev.as_dict()))
        return 0
    print(f"{ev.n_queries} queries over {len(index)} images, {ev.model_id}, k = {ev.k}")
    for label, p in ev.precision_by_label.items():
        print(
            f"  precision@{ev.k} {label:16s} {p:.3f}  (chance {ev.chance_by_label[label]:.3f}, {ev.queries_by_label[label]} queries)"
        )
    if ev.precision_overall is not None:
        print(f"  precision@{ev.k} overall          {ev.precision_overall:.3f}")
    if ev.same_patient_hit_rate is not None:
        print(f"  same-patient hit rate@{ev.k}     {ev.same_patient_hit_rate:.3f}  ({ev.same_patient_queries} queries)")
    return 0
