"""The search services' client (chandra_download.services) and their simulator, in the formats
of ARCHIVE.md: VOTable 1.1 footprints, the catalogue's text tables, CADC and Sesame."""

from __future__ import annotations

import socket
import threading
import xml.etree.ElementTree as ET

import pytest

from chandra_download.config import SessionConfig
from chandra_download.services import (
    DEFAULTS,
    ENV,
    Reply,
    ServiceClient,
    ServiceError,
    cadc_url,
    footprint_query,
    ocat_details_url,
    ocat_list_url,
    parse_cadc,
    parse_footprints,
    parse_ocat,
    parse_sesame,
    service_url,
    sesame_url,
)
from chandra_download.simulator.catalogue import M87
from chandra_download.simulator.services import ArchiveServicesServer

VOT = "{http://www.ivoa.net/xml/VOTable/v1.1}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def client(fast) -> ServiceClient:
    return ServiceClient(SessionConfig(**fast))


def footprints(server, client, radius_deg=1 / 60, inst=None) -> Reply:
    url = footprint_query(server.urls["footprint"], *M87, radius_deg, inst)
    return client.get("footprint", url)


def test_footprint_answer_is_a_votable_1_1_with_several_rows_per_obsid(archive_services, client):
    reply = footprints(archive_services, client)
    root = ET.fromstring(reply.body)
    assert root.tag == f"{VOT}VOTABLE" and root.get("version") == "1.1"
    (resource,) = root.findall(f"{VOT}RESOURCE")
    assert resource.get("type") == "results"
    (info,) = resource.findall(f"{VOT}INFO")
    assert (info.get("name"), info.get("value")) == ("QUERY_STATUS", "OK")
    (table,) = resource.findall(f"{VOT}TABLE")
    assert table.get("name") == "SIAP_KEYWORDS"
    trs = table.findall(f"{VOT}DATA/{VOT}TABLEDATA/{VOT}TR")
    assert int(table.get("nrows")) == len(trs) == 5  # 1843 in 3 pieces, 2749 in 2
    rows = parse_footprints(reply.body, reply.url)
    assert [r["ObsId"] for r in rows] == [1843, 2749, 1843, 2749, 1843]
    assert rows[1]["Grating"] == "HETG" and rows[1]["pi_last_name"] == "van der Berg"
    assert rows[0]["Exposure"] == pytest.approx(40.2)


def test_footprint_with_no_match_has_no_nrows_and_parses_to_no_rows(archive_services, client):
    url = footprint_query(archive_services.urls["footprint"], 10.0, -60.0, 0.01, None)
    reply = client.get("footprint", url)
    table = ET.fromstring(reply.body).find(f"{VOT}RESOURCE/{VOT}TABLE")
    assert table is not None and table.get("nrows") is None
    assert parse_footprints(reply.body, url) == []


def test_footprint_instrument_filter_is_sent_as_inst(archive_services, client):
    rows = parse_footprints(footprints(archive_services, client, 5 / 60, ["HRC-I"]).body, "u")
    assert {r["ObsId"] for r in rows} == {6298}
    assert "INST=HRC-I" in archive_services.requests[-1][1]


def test_footprints_never_list_obsids_that_are_not_public(archive_services, client):
    rows = parse_footprints(footprints(archive_services, client, 10 / 60).body, "u")
    assert {r["ObsId"] for r in rows} == {1843, 2749, 6298}  # 30001-30005 are near, unreleased


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("status-error", "QUERY_STATUS ERROR: Database unavailable"),
        ("error-page", "expected a VOTable 1.1, got <html>"),
        ("garbage", "not XML"),
        ("unavailable", "HTTP 503"),
    ],
)
def test_a_failing_footprint_service_is_a_clear_error_naming_it(
    archive_services, client, mode, words
):
    archive_services.fail("footprint", mode)
    with pytest.raises(ServiceError) as info:
        reply = footprints(archive_services, client)
        parse_footprints(reply.body, reply.url)
    assert info.value.service == "footprint"
    assert str(info.value).startswith("The Chandra footprint service (http://127.0.0.1:")
    assert words in str(info.value)


def test_a_votable_of_another_version_or_shape_is_refused():
    other = b'<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3"/>'
    with pytest.raises(ServiceError, match="expected a VOTable 1.1"):
        parse_footprints(other, "u")
    no_results = (
        b'<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.1"><RESOURCE type="meta"/></VOTABLE>'
    )
    with pytest.raises(ServiceError, match="no RESOURCE of type 'results'"):
        parse_footprints(no_results, "u")


def test_transient_failures_are_retried_then_reported(archive_services, fast):
    archive_services.fail("footprint", "unavailable")
    client = ServiceClient(SessionConfig(**{**fast, "retries": 2}))
    with pytest.raises(ServiceError, match="HTTP 503"):
        footprints(archive_services, client)
    assert sum(1 for s, _ in archive_services.requests if s == "footprint") == 3


def test_catalogue_text_has_comments_header_widths_and_is_iso_8859_1(archive_services, client):
    url = ocat_details_url(archive_services.urls["ocat"], 6298)
    body = client.get("ocat", url).body
    lines = body.split(b"\n")
    assert lines[0].startswith(b"#")
    header = next(ln for ln in lines if not ln.startswith(b"#")).split(b"\t")
    assert header[:3] == [b"SEQ_NUM", b"STATUS", b"OBSID"] and b"PUBLIC_AVAIL" in header
    widths = lines[lines.index(b"\t".join(header)) + 1].split(b"\t")
    assert len(widths) == len(header) and b"5N" in widths
    assert "García".encode("iso-8859-1") in body  # not UTF-8
    (row,) = parse_ocat(body, url)
    assert row["PI_NAME"] == "García" and row["STATUS"] == "archived"
    assert row["RA"] == "12 30 57.61" and row["Dec"] == "+12 24 58.03"


def test_catalogue_unknown_obsid_has_no_row_and_list_selects(archive_services, client):
    url = ocat_details_url(archive_services.urls["ocat"], 99999)
    assert parse_ocat(client.get("ocat", url).body, url) == []
    url = ocat_list_url(archive_services.urls["ocat"], obsid="1843,30001-30003", status="observed")
    rows = parse_ocat(client.get("ocat", url).body, url)
    assert [(r["OBSID"], r["STATUS"]) for r in rows] == [("30001", "observed")]


def test_a_catalogue_error_page_is_refused(archive_services, client):
    archive_services.fail("ocat", "error-page")
    url = ocat_details_url(archive_services.urls["ocat"], 1843)
    with pytest.raises(ServiceError, match="observation catalogue .* not an observation-catalogue"):
        parse_ocat(client.get("ocat", url).body, url)


def test_cadc_key_value_lines_and_425_for_unknown(archive_services, client):
    reply = client.get("cadc", cadc_url(archive_services.urls["cadc"], "m 87"), ok=(200, 425))
    assert b"coordsys=ICRS\n" in reply.body
    assert parse_cadc(reply) == M87
    unknown = client.get("cadc", cadc_url(archive_services.urls["cadc"], "nowhere"), ok=(200, 425))
    assert unknown.status == 425 and parse_cadc(unknown) is None
    fk4 = Reply(200, b"target=x\ncoordsys=FK4\nra=1\ndec=2\n", "u")
    with pytest.raises(ServiceError, match="coordsys"):
        parse_cadc(fk4)


def test_sesame_xml_positions_and_nothing_found(archive_services, client):
    reply = client.get("sesame", sesame_url(archive_services.urls["sesame"], "Virgo A"))
    assert ET.fromstring(reply.body).findtext("Target/Resolver/jradeg") == str(M87[0])
    assert parse_sesame(reply) == M87
    none = client.get("sesame", sesame_url(archive_services.urls["sesame"], "nowhere"))
    assert parse_sesame(none) is None
    with pytest.raises(ServiceError, match="CDS Sesame .* not XML"):
        parse_sesame(Reply(200, b"\x00garbage", "u"))


def test_base_urls_come_from_keyword_then_environment_then_default(monkeypatch):
    for key, var in ENV.items():
        monkeypatch.delenv(var, raising=False)
        assert service_url(key) == DEFAULTS[key]
        monkeypatch.setenv(var, f"http://proxy.example/{key}")
        assert service_url(key) == f"http://proxy.example/{key}"
        assert service_url(key, "https://given.example/x") == "https://given.example/x"
    with pytest.raises(ValueError, match="must be http"):
        service_url("ocat", "ftp://cda.harvard.edu/srservices/")


def test_services_over_tls_are_verified(archive_root, fast):
    with ArchiveServicesServer(archive_root, tls=True) as server:
        url = ocat_details_url(server.urls["ocat"], 1843)
        trusted = ServiceClient(SessionConfig(**fast, ca_bundle=server.ca_file))
        assert parse_ocat(trusted.get("ocat", url).body, url)[0]["OBSID"] == "1843"
        untrusted = ServiceClient(SessionConfig(**{**fast, "retries": 0}))
        with pytest.raises(ServiceError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
            untrusted.get("ocat", url)


def test_an_unreachable_service_is_named(fast):
    url = ocat_details_url(f"http://127.0.0.1:{closed_port()}/srservices/", 1)
    client = ServiceClient(SessionConfig(**{**fast, "retries": 0}))
    with pytest.raises(ServiceError, match="observation catalogue .* Connection refused"):
        client.get("ocat", url)


def test_a_refused_first_contact_is_not_retried(monkeypatch):
    # The session's default policy (5 retries, backoff from 0.5 s) would take seconds.
    url = ocat_details_url(f"http://127.0.0.1:{closed_port()}/srservices/", 1)
    client = ServiceClient(SessionConfig())
    attempts = counted(client, url, monkeypatch)
    with pytest.raises(ServiceError, match="observation catalogue .* Connection refused"):
        client.get("ocat", url)
    assert len(attempts) == 1


def test_a_host_that_answered_once_keeps_the_retry_policy(fast, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = ocat_details_url(f"http://127.0.0.1:{server.getsockname()[1]}/srservices/", 1)
    client = ServiceClient(SessionConfig(**{**fast, "retries": 2}))

    def answer_once() -> None:
        conn, _ = server.accept()
        server.close()  # from now on: connection refused
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    attempts = counted(client, url, monkeypatch)
    with pytest.raises(ServiceError, match="Connection refused"):
        client.get("ocat", url)
    thread.join(5)
    assert len(attempts) == 3  # the 503, then two retries refused


def counted(client: ServiceClient, url: str, monkeypatch) -> list[str]:
    """Record each request the client's pool for ``url`` makes."""
    pool, calls = client._pool(url), []
    request = pool.request

    def spy(*args, **kwargs):
        calls.append(args[1])
        return request(*args, **kwargs)

    monkeypatch.setattr(pool, "request", spy)
    return calls
