"""How good is the similar-case search on a library? Every indexed image in turn is the query.

- precision@k by label: among the k patients returned (query patient excluded, as on the
  page), the share whose diagnosis equals the query patient's, averaged per query label; the
  chance level is the share of that label among the other patients searched.
- same-patient hit rate at k: with the query patient included, the share of queries whose
  patient (having at least one other indexed image, not a copy of the query's pixels) is
  among the k patients returned.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.library.store import CaseLibrary
from core.search.similar import LibraryIndex


@dataclass(frozen=True)
class RetrievalEvaluation:
    k: int
    n_queries: int
    precision_by_label: dict[str, float]
    queries_by_label: dict[str, int]
    chance_by_label: dict[str, float]
    precision_overall: float | None  # mean over labelled queries
    same_patient_hit_rate: float | None
    same_patient_queries: int
    model_id: str = ""
    model_version: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "k": self.k,
            "n_queries": self.n_queries,
            "precision_at_k_by_label": self.precision_by_label,
            "queries_by_label": self.queries_by_label,
            "chance_by_label": self.chance_by_label,
            "precision_at_k": self.precision_overall,
            "same_patient_hit_rate_at_k": self.same_patient_hit_rate,
            "same_patient_queries": self.same_patient_queries,
        }


def evaluate_retrieval(
    library: CaseLibrary,
    index: LibraryIndex,
    *,
    k: int = 5,
    max_queries: int | None = None,
    seed: int = 0,
) -> RetrievalEvaluation:
    """Leave-one-image-out retrieval metrics over the indexed images (a random subset of at
    most ``max_queries`` of them, drawn with ``seed``, for large libraries)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if max_queries is not None and max_queries < 1:
        raise ValueError("max_queries must be at least 1")
    labels = {p.pseudonym: p.label for p in library.patients()}
    query_ids = list(index.ids)
    if max_queries is not None and len(query_ids) > max_queries:
        rng = np.random.default_rng(seed)
        query_ids = sorted(int(i) for i in rng.choice(query_ids, size=max_queries, replace=False))
    hits: dict[str, list[float]] = defaultdict(list)
    same_patient: list[bool] = []
    n_per_label: dict[str, int] = defaultdict(int)  # searched patients per label (unlabelled ones count as misses)
    for p in index.images_of:
        if labels.get(p) is not None:
            n_per_label[str(labels[p])] += 1
    for image_id in query_ids:
        who = index.owner[image_id].patient_pseudonym
        vector = index.vector(image_id)
        assert vector is not None
        # As in the search: the query image and any copy of its pixels are never an answer.
        digest = library.pixel_digest_of(image_id)
        same = frozenset({image_id, *(library.images_with_pixel_digest(digest) if digest else [])})
        label = labels.get(who)
        if label is not None:
            found = index.nearest_patients(vector, k, exclude_images=same, exclude_patients=frozenset({who}))
            if found:
                hits[label].append(float(np.mean([labels.get(p) == label for p, _, _ in found])))
        if len(set(index.images_of.get(who, [])) - same) > 0:
            found = index.nearest_patients(vector, k, exclude_images=same)
            same_patient.append(any(p == who for p, _, _ in found))
    others = max(len(index.images_of) - 1, 1)
    precision = {lb: float(np.mean(v)) for lb, v in sorted(hits.items())}
    all_hits = [h for v in hits.values() for h in v]
    return RetrievalEvaluation(
        k=k,
        n_queries=len(query_ids),
        precision_by_label=precision,
        queries_by_label={lb: len(v) for lb, v in sorted(hits.items())},
        chance_by_label={lb: (n_per_label[lb] - 1) / others for lb in precision},
        precision_overall=float(np.mean(all_hits)) if all_hits else None,
        same_patient_hit_rate=float(np.mean(same_patient)) if same_patient else None,
        same_patient_queries=len(same_patient),
        model_id=index.model_id,
        model_version=index.model_version,
    )
