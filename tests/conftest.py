"""Hypothesis profiles: ``ci`` (derandomised, bounded), ``dev``, ``fuzz`` (long).

Chosen by ``HYPOTHESIS_PROFILE``; the default is ``ci`` when ``CI`` is set to a true value,
else ``dev``. Tests that pass their own ``@settings`` keep their example counts.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True,
                          max_examples=100, stateful_step_count=50,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100, stateful_step_count=50)
settings.register_profile("fuzz", deadline=None, max_examples=20_000, stateful_step_count=200,
                          suppress_health_check=list(HealthCheck))

_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _ci else "dev"))
