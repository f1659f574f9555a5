"""Local simulator of the Chandra Data Archive, for tests and benchmarks without internet.

Public names are imported lazily so that importing this package (e.g. by the pytest plugin in
``fixtures.py``) stays cheap: numpy, astropy and trustme load only when used.

Examples
--------
>>> from chandra_download.simulator import ArchiveHTTPServer, generate_archive
>>> root = generate_archive("/tmp/archive")          # doctest: +SKIP
>>> with ArchiveHTTPServer(root) as server:          # doctest: +SKIP
...     print(server.base_url)                       # http://127.0.0.1:PORT/cdaftp/
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_OBSIDS": "tree",
    "generate_archive": "tree",
    "iter_files": "tree",
    "reprocess": "tree",
    "change_in_place": "tree",
    "Reprocessed": "tree",
    "obsid_dir": "tree",
    "LinkModel": "link",
    "ServerStats": "link",
    "Fault": "faults",
    "FaultPlan": "faults",
    "FAULT_KINDS": "faults",
    "ArchiveHTTPServer": "http",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
