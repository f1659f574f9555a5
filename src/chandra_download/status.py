"""Why an ObsId is not on the site: the observation catalogue tells a typo from data that is
still proprietary, scheduled or canceled (the ``byobsid/`` tree holds public data only)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import threading

from .config import SessionConfig
from .errors import ChandraDownloadError
from .log import vlog
from .services import ServiceClient, ServiceError, ocat_details_url, parse_ocat, service_url

__all__ = ["STATUS_RETRIES", "STATUS_TIMEOUT", "CatalogueStatus", "describe_status"]

#: The catalogue's own time budget, whatever the session's: it only explains a missing ObsId,
#: so a catalogue that accepts connections and never answers may delay a download by at most
#: about twice this many seconds (one attempt and one retry), not the session's full timeout.
STATUS_TIMEOUT = 10.0
STATUS_RETRIES = 1

#: What each catalogue STATUS means for an ObsId that has no data (ARCHIVE.md).
_PHRASES = {
    "scheduled": "scheduled, not yet observed",
    "unobserved": "not yet observed (status unobserved)",
    "untriggered": "a target of opportunity that was never triggered (status untriggered)",
    "canceled": "canceled, never observed (status canceled)",
    "cancelled": "canceled, never observed (status canceled)",
    "deleted": "deleted from the observation catalogue (status deleted)",
}
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()


def _date(text: str) -> dt.date | None:
    """A release date from the catalogue: ``2027-03-04[ ...]`` or ``Mar  4 2027 ...``."""
    m = re.match(r"\s*(\d{4})-(\d{2})-(\d{2})", text)
    if m:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    m = re.match(r"\s*([A-Za-z]{3})\w*\s+(\d{1,2}),?\s+(\d{4})", text)
    if m and m[1].lower() in _MONTHS:
        return dt.date(int(m[3]), _MONTHS.index(m[1].lower()) + 1, int(m[2]))
    return None


def describe_status(row: dict[str, str], today: dt.date | None = None) -> str:
    """One phrase for a catalogue row of an ObsId that is not on the site.

    Parameters
    ----------
    row : dict
        The ``ocatDetails.do`` row (``STATUS``, ``PUBLIC_AVAIL``...).
    today : date, optional
        The day to compare release dates with (default: today, UTC).
    """
    today = today or dt.datetime.now(dt.timezone.utc).date()
    status = row.get("STATUS", "").strip().lower() or "unknown"
    if status in _PHRASES:
        return _PHRASES[status]
    raw = row.get("PUBLIC_AVAIL", "").strip()
    when = _date(raw) if raw else None
    if status in ("observed", "archived"):
        if when is None:
            return f"not public yet, no release date (status {status})"
        if when > today:
            return f"not public until {when.isoformat()} (status {status})"
        return f"public since {when.isoformat()} (status {status}), but not on this site"
    return f"not public (status {status})"


class CatalogueStatus:
    """Asks the observation catalogue why ObsIds are missing; one request per ObsId, cached.

    The catalogue has a short time budget of its own: the session's timeout and retries,
    capped at :data:`STATUS_TIMEOUT` seconds and :data:`STATUS_RETRIES` retry (a catalogue
    that never answers costs at most about 20 s, once per session); a catalogue that refuses
    connections is reported at once.

    Parameters
    ----------
    config : SessionConfig, optional
        Timeout, retries and TLS settings (the download session's; timeout and retries capped).
    ocat_url : str, optional
        Base URL up to and including ``srservices/``; default ``$CHANDRA_OCAT_URL``, else the
        CDA's. A bad value is reported by :meth:`why_missing`, never raised.
    """

    def __init__(self, config: SessionConfig | None = None, ocat_url: str | None = None) -> None:
        config = config or SessionConfig()
        #: The settings the catalogue is asked with (the session's, within the budget).
        self.config = dataclasses.replace(
            config,
            timeout=min(config.timeout, STATUS_TIMEOUT),
            retries=min(config.retries, STATUS_RETRIES),
        )
        self._client = ServiceClient(self.config)
        self._given = ocat_url
        self._cache: dict[int, str] = {}
        self._lock = threading.Lock()
        self._obsid_locks: dict[int, threading.Lock] = {}
        # Once the catalogue could not be reached, later ObsIds are not made to wait for it.
        self._down: str | None = None

    @property
    def unreachable(self) -> str | None:
        """The catalogue's failure once it could not be reached (later ObsIds are not asked),
        else None: a session says it once rather than as each ObsId's reason."""
        return self._down

    def why_missing(self, obsid: int) -> str:
        """Why ``obsid`` is not on the site, as one phrase; never raises.

        Returns
        -------
        str
            ``not public until 2027-03-04 (status observed)``, ``scheduled, not yet
            observed``, ``no such ObsId``, ``the observation catalogue could not be reached
            (...)``, ...
        """
        try:
            obsid = int(obsid)
            with self._lock:
                lock = self._obsid_locks.setdefault(obsid, threading.Lock())
            with lock:  # two threads asking about one ObsId make one request
                if obsid not in self._cache:
                    self._cache[obsid] = self._ask(obsid)
                return self._cache[obsid]
        except Exception as exc:  # never raises: the download's outcome must not change
            return f"the observation catalogue could not be reached ({exc})"

    def _ask(self, obsid: int) -> str:
        if self._down is not None:
            return self._down
        try:
            url = ocat_details_url(service_url("ocat", self._given), obsid)
            reply = self._client.get("ocat", url)
            rows = parse_ocat(reply.body, url)
        except (ServiceError, ChandraDownloadError, ValueError) as exc:
            problem = exc.problem if isinstance(exc, ServiceError) else str(exc)
            self._down = f"the observation catalogue could not be reached ({problem})"
            vlog(2, "ObsId %s: %s", obsid, exc)
            return self._down
        if not rows:
            return "no such ObsId"
        return describe_status(rows[0])

    def close(self) -> None:
        """Close the catalogue connections."""
        self._client.close()
