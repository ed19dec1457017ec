"""Patient-level splits: every trainer and every evaluation keeps one patient on one side.

- :func:`split_patients`: seeded train/dev/test sets, stratified by a label or outcome (the
  survival and prognosis models);
- :func:`patient_split`: a held-out test set and k validation folds, stratified by label (the
  CT models, trained with k-fold cross-validation);
- :func:`core.datasets.sources.split_by_patient` splits image samples, with blocks of
  neighbouring file numbers for images without a patient id.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from sklearn.model_selection import StratifiedKFold

from core.errors import InsufficientDataError


def split_patients(strata: dict[str, str], seed: int, fractions: tuple[float, float, float]) -> dict[str, set[str]]:
    """Seeded train/dev/test sets of patient ids, stratified: each stratum (e.g. outcome) is
    shuffled and cut by ``fractions`` on its own, so every part keeps the mix."""
    by: dict[str, list[str]] = defaultdict(list)
    for pid, stratum in strata.items():
        by[stratum].append(pid)
    rng = np.random.default_rng(seed)
    parts: dict[str, set[str]] = {"train": set(), "dev": set(), "test": set()}
    for stratum in sorted(by):
        ids = sorted(by[stratum])
        rng.shuffle(ids)
        n = len(ids)
        n_test = round(n * fractions[2])
        n_dev = round(n * fractions[1])
        parts["test"].update(ids[:n_test])
        parts["dev"].update(ids[n_test : n_test + n_dev])
        parts["train"].update(ids[n_test + n_dev :])
    for name, ids in parts.items():
        if not ids:
            raise InsufficientDataError(
                f"Too few patients for a {name} split ({len(strata)} patients in all); add patients."
            )
    return parts


def patient_split(
    patients: list[str], labels: list[int], folds: int, test_fraction: float, seed: int
) -> tuple[set[str], list[set[str]]]:
    """(held-out test patients, the validation patients of each fold), stratified by label.

    Every patient is in exactly one of: the test set, or one fold's validation set.
    """
    ids = np.asarray(patients)
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test: set[str] = set()
    for cls in np.unique(y):
        members = sorted(ids[y == cls])
        rng.shuffle(members)
        n_test = max(1, round(len(members) * test_fraction)) if len(members) >= 3 else 0
        test.update(members[:n_test])
    pool = np.array([i for i in ids if i not in test])
    pool_y = np.array([lab for i, lab in zip(ids, y, strict=True) if i not in test])
    if min(Counter(pool_y.tolist()).values(), default=0) < folds or len(set(pool_y.tolist())) < 2:
        raise InsufficientDataError(
            f"Too few patients for {folds}-fold cross-validation: each class needs at least {folds} patients "
            "outside the held-out test set."
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return test, [set(pool[val].tolist()) for _, val in splitter.split(pool, pool_y)]
