"""Download public Chandra X-ray Observatory data by ObsId, fast and safely.

>>> from chandra_download import download_chandra_obsids
>>> download_chandra_obsids([1843], filetypes=["evt2", "asol"])  # doctest: +SKIP
[True]
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .api import download, download_chandra_obsids
from .config import SessionConfig
from .errors import (
    AuthError,
    ChandraDownloadError,
    ObsIdNotFound,
    SourceError,
    TransientError,
    VerificationError,
)
from .filetypes import DESCRIPTIONS, FILETYPES, classify
from .log import set_verbosity
from .results import FileResult, ObsIdResult, Results, Status
from .sources import NAMED_SITES

if TYPE_CHECKING:
    from .find import find_chandra_obsids

__all__ = [
    "AuthError",
    "ChandraDownloadError",
    "DESCRIPTIONS",
    "FILETYPES",
    "FileResult",
    "NAMED_SITES",
    "ObsIdNotFound",
    "ObsIdResult",
    "Results",
    "SessionConfig",
    "SourceError",
    "Status",
    "TransientError",
    "VerificationError",
    "__version__",
    "classify",
    "download",
    "download_chandra_obsids",
    "find_chandra_obsids",
    "set_verbosity",
]


def __getattr__(name: str) -> Any:
    # The catalogue search is imported when first used: a download never pays its import
    # (its services and XML parser were a twentieth of every command's start-up).
    if name == "find_chandra_obsids":
        from .find import find_chandra_obsids

        return find_chandra_obsids
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
