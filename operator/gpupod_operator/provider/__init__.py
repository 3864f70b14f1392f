"""The provider boundary: the only way the controller reaches the remote GPU cloud.

`Provider` is the interface (observe / look up by name / create / pause / resume / delete /
list all), in the spirit of Crossplane's ExternalClient; `YottaProvider` implements it on the
Yotta client. Errors leave it as `domain.failures.ProviderError` and nothing else.
"""

from gpupod_operator.provider.base import Provider, Snapshot
from gpupod_operator.provider.yotta import YottaProvider

__all__ = ["Provider", "Snapshot", "YottaProvider"]
