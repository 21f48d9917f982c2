"""Start, watch and stop the five Sonalyze services as local processes."""

from sonalyze_suite.launcher import ServiceFailed, Suite, SuiteConfig
from sonalyze_suite.services import SERVICES, ServiceSpec

__all__ = ["SERVICES", "ServiceFailed", "ServiceSpec", "Suite", "SuiteConfig"]
