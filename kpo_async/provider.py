"""What Airflow's providers manager learns about kpo-async (entry point `apache_airflow_provider`).

The provider info is data, in Airflow's format, in ``provider.yaml`` next to this file (as the
official providers' ``provider.yaml``): the operator, trigger, hook, connection form, extra link,
task decorators and the ``[kpo_async]`` settings. Provider discovery must not import Airflow.
"""

from __future__ import annotations

from typing import Any

from kpo_async import __version__
from kpo_async.settings import PROVIDER_INFO

_CONNECTION = PROVIDER_INFO["connection-types"][0]
CONNECTION_TYPE: str = _CONNECTION["connection-type"]
#: Connection fields Airflow's form hides: the cluster is described by the extras alone.
HIDDEN_FIELDS = tuple(_CONNECTION["ui-field-behaviour"]["hidden-fields"])


def get_provider_info() -> dict[str, Any]:
    return {**PROVIDER_INFO, "versions": [__version__]}
