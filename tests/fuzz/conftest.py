"""Hypothesis profiles of the fuzz tests.

- ``ci`` (the default): 200 examples per test, derandomized (the same examples on every run,
  so CI is reproducible), no example database written; the 12 fuzz tests take about 10 s
  (plus imports) on one core.
- ``long``: the deep run, ``python -m pytest tests/fuzz -p no:cacheprovider
  --hypothesis-profile=long --hypothesis-show-statistics``: 6000 random examples per test,
  about 8.5 minutes on one core, peak RSS about 1 GB.

Both give each example at most :data:`DEADLINE` of wall time: far above what a reader takes on
these small inputs (tens of milliseconds), so only a reader that loops or decodes far more than
it was given fails it. Profiles are registered here because pytest imports this file before
Hypothesis reads ``--hypothesis-profile`` when the run names ``tests/fuzz``.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

#: Wall time allowed to one example (one call of a reader on one generated input).
DEADLINE = timedelta(seconds=5)

_COMMON = {
    "deadline": DEADLINE,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=6000, database=None, print_blob=True, **_COMMON)
if settings.get_current_profile_name() == "default":
    settings.load_profile("ci")
