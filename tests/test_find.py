"""find_chandra_obsids(): a name, an ObsId and a position against the simulated services;
one row per ObsId with units; every instrument/grating filter; resolver fallback; errors."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from chandra_download import download
from chandra_download.find import GRATINGS, INSTRUMENTS, NameNotResolved, find_chandra_obsids
from chandra_download.services import ServiceError
from chandra_download.simulator.catalogue import M87
from chandra_download.simulator.services import ArchiveServicesServer
from chandra_download.simulator.tree import generate_archive

# An archive with one ObsId per instrument/grating pair, all within 1 arcmin of M87.
SETUPS = {
    101: ("acis", "ACIS-I", "NONE"),
    102: ("acis", "ACIS-S", "NONE"),
    103: ("acis-grating", "ACIS-S", "HETG"),
    104: ("acis-grating", "ACIS-S", "LETG"),
    105: ("hrc", "HRC-I", "NONE"),
    106: ("hrc", "HRC-S", "LETG"),
}
EXPECT_INSTRUMENT = {
    "all": {101, 102, 103, 104, 105, 106},
    "acis": {101, 102, 103, 104},
    "hrc": {105, 106},
    "acisi": {101},
    "aciss": {102, 103, 104},
    "hrci": {105},
    "hrcs": {106},
}
EXPECT_GRATING = {
    "all": {101, 102, 103, 104, 105, 106},
    "none": {101, 102, 105},
    "letg": {104, 106},
    "hetg": {103},
    "any": {103, 104, 106},
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta = {
        o: {"instrument": i, "grating": g, "offset": (0.1 * (o - 100), 0.0), "pi": f"PI{o}"}
        for o, (_, i, g) in SETUPS.items()
    }
    kinds = {o: k for o, (k, _, _) in SETUPS.items()}
    return generate_archive(tmp_path_factory.mktemp("mixed"), kinds, scale=0.01, observations=meta)


@pytest.fixture
def mixed(mixed_root, monkeypatch):
    with ArchiveServicesServer(mixed_root) as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        yield server


@pytest.fixture
def services(archive_services, monkeypatch):
    for k, v in archive_services.env().items():
        monkeypatch.setenv(k, v)
    return archive_services


def test_a_name_gives_one_row_per_obsid_with_units(services, fast):
    table = find_chandra_obsids("M87", **fast)
    assert list(table["obsid"]) == [1843, 2749]  # the service gives 1843 three times
    assert table.colnames == [
        "obsid", "instrument", "grating", "exposure", "ra", "dec", "separation",
        "target", "obsdate", "pi",
    ]  # fmt: skip
    assert table["exposure"].unit == u.ks and table["separation"].unit == u.arcmin
    assert table["ra"].unit == u.deg and table["dec"].unit == u.deg
    row = table[1]
    assert (row["instrument"], row["grating"], row["target"], row["pi"]) == (
        "ACIS-S", "HETG", "M87 JET", "van der Berg",
    )  # fmt: skip
    assert row["exposure"] == pytest.approx(25.1)
    assert row["obsdate"] == "2002-07-05 11:12:05"
    expected = SkyCoord(*M87, unit="deg").separation(SkyCoord(row["ra"], row["dec"], unit="deg"))
    assert row["separation"] == pytest.approx(expected.arcmin)
    assert table.meta["ra"] == M87[0] and table.meta["dec"] == M87[1]
    assert [s for s, _ in services.requests] == ["cadc", "footprint"]


def test_an_obsid_searches_around_its_catalogue_position(services, fast):
    table = find_chandra_obsids("6298", radius=0.5, **fast)
    assert list(table["obsid"]) == [6298]
    assert table["separation"][0] == pytest.approx(0.0, abs=0.01)  # its own aim point
    assert [s for s, _ in services.requests] == ["ocat", "footprint"]
    assert table.meta["located_by"] == "ObsId 6298"


@pytest.mark.parametrize(
    ("ra", "dec"),
    [
        (M87[0], M87[1]),
        (str(M87[0]), str(M87[1])),
        ("12 30 49.42", "+12 23 28.0"),
        ("12:30:49.42", "12:23:28.0"),
        ("12h30m49.42s", "12d23m28s"),
    ],
)
def test_a_position_in_decimal_or_sexagesimal(services, fast, ra, dec):
    table = find_chandra_obsids(ra, dec, **fast)
    assert list(table["obsid"]) == [1843, 2749]
    assert table.meta["ra"] == pytest.approx(M87[0], abs=1e-4)
    assert [s for s, _ in services.requests] == ["footprint"]


def test_a_skycoord_and_the_radius(services, fast):
    where = SkyCoord(*M87, unit="deg")
    assert list(find_chandra_obsids(where, radius=5, **fast)["obsid"]) == [1843, 2749, 6298]
    # radius 0: the position must be covered (simulated footprints are 0.5 arcmin circles)
    assert list(find_chandra_obsids(where, radius=0, **fast)["obsid"]) == [1843]


def test_no_match_is_an_empty_table_with_the_columns(services, fast):
    table = find_chandra_obsids("Empty Field", **fast)
    assert len(table) == 0 and "obsid" in table.colnames
    assert (table.meta["ra"], table.meta["dec"]) == (10.0, -60.0)


@pytest.mark.parametrize("instrument", list(INSTRUMENTS))
@pytest.mark.parametrize("grating", list(GRATINGS))
def test_every_instrument_and_grating_filter(mixed, fast, instrument, grating):
    table = find_chandra_obsids(*M87, radius=2, instrument=instrument, grating=grating, **fast)
    assert set(table["obsid"]) == EXPECT_INSTRUMENT[instrument] & EXPECT_GRATING[grating]
    for row in table:
        assert (row["instrument"], row["grating"]) == SETUPS[int(row["obsid"])][1:]


def test_the_obsids_go_straight_into_download(services, archive_http, tmp_path, fast):
    table = find_chandra_obsids("M87", **fast)
    obsids = table["obsid"].tolist()
    results = download(obsids, "oif", mirror=archive_http.base_url, outdir=tmp_path)
    assert results.ok and [r.obsid for r in results] == [1843, 2749]


def test_cadc_unreachable_falls_back_to_sesame(services, monkeypatch, fast):
    monkeypatch.setenv("CHANDRA_CADC_RESOLVER_URL", f"http://127.0.0.1:{closed_port()}/find")
    table = find_chandra_obsids("M87", **fast)
    assert list(table["obsid"]) == [1843, 2749]
    assert [s for s, _ in services.requests] == ["sesame", "footprint"]


def test_cadc_failing_or_not_knowing_the_name_falls_back_to_sesame(services, fast):
    services.fail("cadc", "unavailable")
    assert list(find_chandra_obsids("M87", **fast)["obsid"]) == [1843, 2749]
    services.heal()
    assert list(find_chandra_obsids("Virgo A", **fast)["obsid"]) == [1843, 2749]  # 425 at CADC
    assert [s for s, _ in services.requests][-3:] == ["cadc", "sesame", "footprint"]


def test_an_unknown_name_and_failing_resolvers_are_clear_errors(services, fast):
    with pytest.raises(NameNotResolved, match="'Nowhere' with CADC or CDS Sesame"):
        find_chandra_obsids("Nowhere", **fast)
    with pytest.raises(NameNotResolved, match="ObsId 60000 is not in the observation catalogue"):
        find_chandra_obsids("60000", **fast)
    assert [s for s, _ in services.requests][-3:] == ["ocat", "cadc", "sesame"]
    services.fail("cadc", "garbage")
    services.fail("sesame", "error-page")
    with pytest.raises(ServiceError) as info:
        find_chandra_obsids("M87", **fast)
    # One level per service, in the order asked: no service's message nested in another's.
    assert re.fullmatch(
        r"could not resolve 'M87': CADC name resolver \(http://127\.0\.0\.1:\d+/[^ ]*\) "
        r"failed: [^;]+; CDS Sesame name resolver \(http://127\.0\.0\.1:\d+/[^ ]*\) "
        r"failed: [^;]+",
        str(info.value),
    ), str(info.value)
    assert str(info.value).count("failed") == 2


def test_a_refused_resolver_falls_back_to_sesame_at_once(services, monkeypatch):
    # The default retry policy: a host that refuses its first connection is not retried.
    monkeypatch.setenv("CHANDRA_CADC_RESOLVER_URL", f"http://127.0.0.1:{closed_port()}/find")
    start = time.monotonic()
    table = find_chandra_obsids("M87")
    assert time.monotonic() - start < 3
    assert list(table["obsid"]) == [1843, 2749]


def test_a_refused_footprint_service_fails_at_once_naming_it(services, monkeypatch):
    monkeypatch.setenv("CHANDRA_FOOTPRINT_URL", f"http://127.0.0.1:{closed_port()}/footprints")
    start = time.monotonic()
    with pytest.raises(ServiceError, match="footprint service .*Connection refused"):
        find_chandra_obsids("M87")
    assert time.monotonic() - start < 3


@pytest.mark.parametrize(
    ("service", "mode", "words"),
    [
        ("footprint", "status-error", "footprint service"),
        ("footprint", "error-page", "footprint service"),
        ("footprint", "garbage", "footprint service"),
        ("ocat", "error-page", "observation catalogue"),
    ],
)
def test_a_service_failure_names_the_service(services, fast, service, mode, words):
    services.fail(service, mode)
    with pytest.raises(ServiceError, match=words):
        find_chandra_obsids("1843", **fast)


def test_keywords_win_over_the_environment(archive_services, monkeypatch, fast):
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("CHANDRA_FOOTPRINT_URL", dead + "/footprints")
    monkeypatch.setenv("CHANDRA_CADC_RESOLVER_URL", dead + "/find")
    urls = archive_services.urls
    table = find_chandra_obsids(
        "M87", footprint_url=urls["footprint"], cadc_url=urls["cadc"], **fast
    )
    assert list(table["obsid"]) == [1843, 2749]


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        (("M87",), {"instrument": "xmm"}, "Invalid instrument 'xmm'"),
        (("M87",), {"grating": "rgs"}, "Invalid grating 'rgs'"),
        (("M87",), {"radius": -1}, "Invalid radius"),
        (("400", "10"), {}, "Invalid RA '400'"),
        (("10", "-95"), {}, "Invalid Dec '-95'"),
        (("12 3x", "10"), {}, "Invalid RA"),
        (("",), {}, "must be given"),
    ],
)
def test_bad_arguments_are_one_clear_value_error(services, args, kwargs, words):
    with pytest.raises(ValueError, match=words):
        find_chandra_obsids(*args, **kwargs)
    assert services.requests == []  # nothing asked before the arguments are checked


def test_the_callers_config_is_never_changed(archive_services):
    from chandra_download.config import SessionConfig

    mine = SessionConfig(timeout=30.0, retries=3)
    find_chandra_obsids(
        "1843", config=mine, timeout=7.0, ocat_url=archive_services.urls["ocat"],
        footprint_url=archive_services.urls["footprint"],
    )  # fmt: skip
    assert (mine.timeout, mine.retries) == (30.0, 3)
