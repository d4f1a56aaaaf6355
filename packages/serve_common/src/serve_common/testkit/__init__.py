"""Conformance kit every service's tests use.

- `ServiceConformance`: base test class; subclass it, provide the `service_url` fixture and the
  class attributes, and every service is checked for the same contract (error shape, auth,
  health, model names, body limit, KServe V2, survival after bad input).
- `LocalServe` (and the `local_serve` pytest fixture, registered as a pytest plugin): one
  embedded Ray + Serve per test session, shared by every package's tests.
"""

from serve_common.testkit.conformance import TEST_API_KEY, ServiceConformance
from serve_common.testkit.local_serve import LocalServe

__all__ = ["TEST_API_KEY", "LocalServe", "ServiceConformance"]
