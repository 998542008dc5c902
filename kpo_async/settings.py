"""kpo-async's settings: the ``[kpo_async]`` section of Airflow's configuration (docs/settings.md).

Read through Airflow's configuration, so ``airflow.cfg`` and ``AIRFLOW__KPO_ASYNC__<NAME>`` both
work, and declared in the provider info, so ``airflow config list --section kpo_async`` shows them.
The options (type, default, example, description) are data, in ``provider.yaml``'s ``config``;
this module loads that file, which also holds the rest of the provider info (``provider.py``).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML was built with it
#: Airflow's provider info (no ``versions``): the operator, trigger, hook, connection form, extra
#: link, task decorators and the ``[kpo_async]`` settings.
PROVIDER_INFO: dict[str, Any] = yaml.load(Path(__file__).with_name("provider.yaml").read_text(), _LOADER)

SECTION = "kpo_async"
#: Each option's Airflow fields (description, version_added, type, example, default).
OPTIONS: dict[str, dict[str, Any]] = PROVIDER_INFO["config"][SECTION]["options"]
#: The smallest valid value of a number (0 if not listed).
_MINIMUM = {"api_connections": 1, "log_records_per_second": 0.01}
_BOOLEANS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


def setting(name: str) -> Any:
    """The value of ``[kpo_async] <name>``, typed; an invalid value raises an error naming the fix.

    Read once per process, as Airflow reads ``airflow.cfg`` once: a triggerer does not go through
    Airflow's configuration lookups for each new client. The environment variable is part of the
    cache key, so a process (a test) that changes it reads the setting again.
    """
    return _read(name, os.environ.get(f"AIRFLOW__KPO_ASYNC__{name.upper()}"))


@functools.cache
def _read(name: str, environment_value: str | None) -> Any:
    from airflow.configuration import conf

    option = OPTIONS[name]
    text = conf.get(SECTION, name, fallback=option["default"])
    if option["type"] == "string":
        return text
    if option["type"] == "boolean" and text.strip().lower() in _BOOLEANS:
        return _BOOLEANS[text.strip().lower()]
    wanted = f"{'an integer' if option['type'] == 'integer' else 'a number'} >= {_MINIMUM.get(name, 0)}"
    wanted = "True or False" if option["type"] == "boolean" else wanted
    with contextlib.suppress(ValueError):
        if (value := (int if option["type"] == "integer" else float)(text)) >= _MINIMUM.get(name, 0):
            return value
    from kpo_async.errors import KpoAsyncError

    raise KpoAsyncError(
        f"[kpo_async] {name} = {text!r} is not {wanted}. Fix: set it to {wanted} under [kpo_async] in "
        f"airflow.cfg or in AIRFLOW__KPO_ASYNC__{name.upper()} (default: {option['default']}), or unset it"
    )
