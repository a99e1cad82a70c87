"""Shared test configuration.

Hypothesis runs with a bounded example count in CI (profile ``ci``) and more locally when asked
(``--hypothesis-profile=dev``)."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
