"""Download public Chandra X-ray Observatory data by ObsId, fast and safely.

>>> from chandra_download import download_chandra_obsids
>>> download_chandra_obsids([1843], filetypes=["evt2", "asol"])  # doctest: +SKIP
[True]
"""

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
from .find import find_chandra_obsids
from .log import set_verbosity
from .results import FileResult, ObsIdResult, Results, Status
from .sources import NAMED_SITES

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
