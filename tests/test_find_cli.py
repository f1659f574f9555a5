"""The find_chandra_obsid command against the simulated services: CIAO's output for every
detail, its name=value form and --name options, download=all|ask, exit status and errors."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_find import EXPECT_GRATING, EXPECT_INSTRUMENT, SETUPS, mixed, mixed_root  # noqa: F401 - fixtures

from chandra_download import __version__, find_cli
from chandra_download.find import GRATINGS, INSTRUMENTS
from chandra_download.simulator import iter_files
from chandra_download.simulator.services import ArchiveServicesServer

BASIC = """\
# obsid  sepn   inst grat   time    obsdate         piname    target
1843      0.3 ACIS-I NONE   40.2 2000-07-29         Harris       M87
2749      0.6 ACIS-S HETG   25.1 2002-07-05 "van der Berg" "M87 JET"
"""
ALL = """\
# obsid sepn    inst grat   time      rastr       decstr             obsdate         piname    target         ra       dec
1843      0.3 ACIS-I NONE   40.2 12:30:49.8 +12:23:46.03 2000-07-29 20:44:31         Harris       M87 187.707636  12.39612
2749      0.6 ACIS-S HETG   25.1 12:30:47.4 +12:23:04.03 2002-07-05 11:12:05 "van der Berg" "M87 JET" 187.697398 12.384453
6298      2.5  HRC-I NONE   12.5 12:30:57.6 +12:24:58.03 2005-11-10 03:02:01         García       M87 187.740058  12.41612
"""
ASKED = """\
There were 2 matching observations:

1/2: Obsid=1843 Sepn=0.3 Inst=ACIS-I Grat=NONE Exp=40.2 ObsDate=2000-07-29
   PI=Harris Target=M87
2/2: Obsid=2749 Sepn=0.6 Inst=ACIS-S Grat=HETG Exp=25.1 ObsDate=2002-07-05
   PI=van der Berg Target=M87 JET

Use h to get help on the download options.

1/2: Obsid=1843 Sepn=0.3 Inst=ACIS-I Grat=NONE Exp=40.2 ObsDate=2000-07-29
   PI=Harris Target=M87

Download [y, n, q, a, h]: @
2/2: Obsid=2749 Sepn=0.6 Inst=ACIS-S Grat=HETG Exp=25.1 ObsDate=2002-07-05
   PI=van der Berg Target=M87 JET

Download [y, n, h]: @
Selected ObsID: 1843

""".replace("@\n", "\n")  # input() writes its prompt with no newline; stdin is not echoed


@pytest.fixture
def services(archive_services, monkeypatch):
    for k, v in archive_services.env().items():
        monkeypatch.setenv(k, v)
    return archive_services


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = find_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_detail_basic_is_ciaos_table(services, capsys):
    assert run(capsys, "m87") == (0, BASIC, "")


def test_detail_all_is_ciaos_table(services, capsys):
    assert run(capsys, "m87", "radius=5", "detail=all") == (0, ALL, "")


def test_detail_obsid_and_no_match(services, capsys):
    assert run(capsys, "6298", "detail=obsid", "radius=3") == (0, "# obsid\n1843\n2749\n6298\n", "")
    no_match = "# No observations were found for ra=10.0 dec=-60.0\n"
    assert run(capsys, "Empty Field") == (0, no_match, "")


@pytest.mark.parametrize(
    "argv",
    [
        ["m87", "radius=5", "detail=obsid", "instrument=acis"],
        ["m87", "--radius", "5", "--detail", "obsid", "--instrument", "acis"],
        ["--radius=5", "m87", "--detail=obsid", "--instrument=ACIS"],
        ["arg=m87", "rad=5", "det=obsid", "inst=acis"],  # CIAO's unique prefixes
    ],
)
def test_name_value_form_and_options_are_the_same(services, capsys, argv):
    assert run(capsys, *argv) == (0, "# obsid\n1843\n2749\n", "")


@pytest.mark.parametrize(
    "argv",
    [
        ["0:40:00", "-60:00:00"],
        ["0 40 00", "-60 00 00"],
        ["10.0", "-60"],
        ["arg=0h40m", "dec=-60d00m"],
        ["--arg", "10", "--dec", "-60:00:00"],
    ],
)
def test_negative_sexagesimal_dec_is_a_value_not_an_option(services, capsys, argv):
    # The position is printed as CIAO would: no float noise (not ra=9.999999999999998).
    out = run(capsys, *argv, "detail=obsid")[1]
    assert out == "# No observations were found for ra=10.0 dec=-60.0\n"
    out = run(capsys, *argv, "download=all")[1]
    assert out == "No observations were found for ra=10.0 dec=-60.0\n"


@pytest.mark.parametrize("instrument", list(INSTRUMENTS))
@pytest.mark.parametrize("grating", list(GRATINGS))
def test_rows_of_every_instrument_grating_and_detail(
    mixed,  # noqa: F811 - the fixture imported above
    capsys,
    instrument,
    grating,
):
    want = sorted(EXPECT_INSTRUMENT[instrument] & EXPECT_GRATING[grating])
    for detail, fields in (("basic", 8), ("obsid", 1), ("all", 13)):
        code, out, _ = run(
            capsys, "187.70593", "12.39112", "radius=2", f"instrument={instrument}",
            f"grating={grating}", f"detail={detail}",
        )  # fmt: skip
        assert code == 0
        lines = out.splitlines()
        if not want:
            assert lines == ["# No observations were found for ra=187.70593 dec=12.39112"]
            continue
        assert lines[0].startswith("# obsid")
        assert [int(line.split()[0]) for line in lines[1:]] == want
        for line in lines[1:]:
            assert len(line.split()) == fields, line  # PI and target names have no blanks here
            if detail != "obsid":
                inst, grat = SETUPS[int(line.split()[0])][1:]
                assert line.split()[2:4] == [inst, grat]


def test_verbose_0_prints_nothing(services, capsys):
    assert run(capsys, "m87", "verbose=0") == (0, "", "")


@pytest.mark.parametrize(
    ("service", "mode", "arg", "words"),
    [
        ("footprint", "garbage", "m87", "The Chandra footprint service (http://127.0.0.1:"),
        ("footprint", "status-error", "m87", "QUERY_STATUS ERROR: Database unavailable"),
        ("ocat", "error-page", "1843", "The Chandra observation catalogue (http://127.0.0.1:"),
    ],
)
def test_a_failed_service_is_named_and_exits_1(services, capsys, service, mode, arg, words):
    services.fail(service, mode)
    code, out, err = run(capsys, arg)
    assert code == 1 and out == ""
    assert err.startswith(f"# find_chandra_obsid ({__version__}): ERROR ")
    assert words in err and len(err.splitlines()) == 1


def test_unknown_name_and_bad_arguments(services, capsys):
    code, _, err = run(capsys, "Nowhere")
    assert code == 1 and "Unable to resolve the name 'Nowhere'" in err
    with pytest.raises(SystemExit) as info:
        find_cli.main(["m87", "instrument=xmm"])
    assert info.value.code == 2 and "invalid choice: 'xmm'" in capsys.readouterr().err
    code, _, err = run(capsys, "m87", "--filetypes", "evt9")
    assert code == 2 and "Unknown requested file type 'evt9'" in err
    with pytest.raises(SystemExit) as info:
        find_cli.main([])
    assert info.value.code == 2 and "must be given" in capsys.readouterr().err
    assert [s for s, _ in services.requests] == ["cadc", "sesame"]  # only for the name


def test_download_all_fetches_every_match_byte_for_byte(
    services, archive_http, archive_root, tmp_path, capsys
):
    out = tmp_path / "data"
    code, stdout, err = run(
        capsys, "m87", "download=all", "--mirror", archive_http.base_url, "--outdir", str(out)
    )
    assert (code, err) == (0, "")
    assert "# obsid" not in stdout  # CIAO prints no table when downloading
    assert sorted(p.name for p in out.iterdir() if p.name != ".chandra-download") == [
        "1843",
        "2749",
    ]
    for obsid in (1843, 2749):
        archive = dict(iter_files(archive_root, obsid))
        local = {p.relative_to(out / str(obsid)).as_posix(): p for p in (out / str(obsid)).rglob("*") if p.is_file() and ".chandra-download" not in p.parts}  # fmt: skip
        assert local.keys() == archive.keys()
        assert all(sha(local[k]) == sha(archive[k]) for k in archive)
        assert f"ObsId {obsid}" in stdout


def test_download_all_passes_types_exclude_and_jobs(
    services, archive_http, archive_root, tmp_path, capsys
):
    out = tmp_path / "data"
    code, _, _ = run(
        capsys, "6298", "radius=0", "download=all", "mirror=" + archive_http.base_url,
        "outdir=" + str(out), "filetypes=level2", "exclude=eph1,dtf", "jobs=2",
    )  # fmt: skip
    assert code == 0
    got = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    )
    assert got == [
        "6298/primary/hrcf06298N006_evt2.fits.gz",
        "6298/primary/hrcf06298_000N006_fov1.fits.gz",
        "6298/primary/pcadf06298_000N001_asol1.fits.gz",
        "6298/secondary/hrcf06298_000N006_bpix1.fits.gz",
        "6298/secondary/hrcf06298_000N006_msk1.fits.gz",
    ]


def test_download_ask_through_stdin(services, archive_http, tmp_path):
    out = tmp_path / "data"
    env = {**os.environ, **services.env(), "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run(
        [sys.executable, "-m", "chandra_download.find_cli", "m87", "download=ask",
         "--mirror", archive_http.base_url, "--outdir", str(out)],
        input="y\nn\n", capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(ASKED)
    assert sorted(d.name for d in out.iterdir() if d.name != ".chandra-download") == ["1843"]


@pytest.mark.parametrize(
    ("answers", "fetched", "words"),
    [
        ("h\nq\n", [], ["    q  - do not download this or the remaining 1 ObsIDs",
                        "Skipping the remaining 2 ObsIDs.",
                        "No data has been selected for download."]),
        ("maybe\na\n", ["1843", "2749"], ["Unrecognised option: maybe",
                                          "Downloading the remaining 2 ObsIDs.",
                                          "Selected ObsIDs: 1843, 2749"]),
        ("n\ny\n", ["2749"], ["Selected ObsID: 2749"]),
        ("", [], ["No data has been selected for download."]),  # stdin closed
    ],
)  # fmt: skip
def test_download_ask_answers(
    services, archive_http, tmp_path, capsys, monkeypatch, answers, fetched, words
):
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    out = tmp_path / "data"
    code, stdout, _ = run(
        capsys, "m87", "download=ask", "--mirror", archive_http.base_url, "--outdir", str(out)
    )
    assert code == 0
    for w in words:
        assert w in stdout  # an answer's reply follows the prompt on its line
    assert (
        sorted(d.name for d in out.iterdir() if d.name != ".chandra-download")
        if out.exists()
        else []
    ) == fetched


def test_download_with_no_match_and_a_failed_download(services, tmp_path, capsys):
    code, out, _ = run(capsys, "Empty Field", "download=all", "--outdir", str(tmp_path))
    assert (code, out) == (0, "No observations were found for ra=10.0 dec=-60.0\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/cdaftp/"
    code, _, err = run(
        capsys, "6298", "radius=0", "download=all", "--mirror", dead, "--outdir", str(tmp_path),
        "--retries", "0", "--timeout", "2",
    )  # fmt: skip
    assert code == 1 and "6298" in err


def test_the_services_simulator_command_prints_the_variables(archive_root):
    proc = subprocess.Popen(
        [sys.executable, "-m", "chandra_download.simulator", "serve", "--protocol", "services",
         "--root", str(archive_root)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        env = {}
        while len(env) < 4:
            line = proc.stdout.readline()
            assert line, "the simulator ended early"
            m = re.match(r"export (CHANDRA_\w+_URL)=(\S+)", line)
            if m:
                env[m[1]] = m[2]
        code = subprocess.run(
            [sys.executable, "-m", "chandra_download.find_cli", "m87", "detail=obsid"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        assert code.stdout == "# obsid\n1843\n2749\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_services_server_needs_a_known_failure_mode(archive_root):
    server = ArchiveServicesServer(archive_root)
    try:
        with pytest.raises(ValueError, match="use"):
            server.fail("footprint", "slow")
    finally:
        server.stop()


def test_verbose_2_shows_the_requests(services, capsys):
    code, out, _ = run(capsys, "m87", "verbose=2", "detail=obsid")
    assert code == 0
    assert "Resolved 'm87' to ra=187.70593 dec=12.39112 (cadc)" in out
    assert "Querying the footprint service: http://127.0.0.1:" in out
    assert out.endswith("# obsid\n1843\n2749\n")


@pytest.mark.parametrize("download", ["all", "ask"])
def test_a_bad_mirror_is_refused_before_any_search(services, capsys, tmp_path, download):
    code, out, err = run(
        capsys, "m87", f"download={download}", "mirror=cdaa", "--outdir", str(tmp_path)
    )
    assert (code, out) == (2, "")
    assert err.startswith(f"# find_chandra_obsid ({__version__}): ERROR Unknown site 'cdaa'")
    assert len(err.splitlines()) == 1
    assert services.requests == []


def test_an_unknown_parameter_is_an_error_naming_it(services, capsys):
    with pytest.raises(SystemExit) as info:
        find_cli.main(["m87", "bogus=1"])
    assert info.value.code == 2
    assert "unknown parameter 'bogus'" in capsys.readouterr().err
    assert services.requests == []


@pytest.mark.parametrize(
    ("prefix", "full"),
    [("in", "instrument=hrc"), ("i", "instrument=hrc"), ("m", "mirror=cda"), ("v", "verbose=1")],
)
def test_ciaos_parameters_win_prefix_matching(services, capsys, prefix, full):
    value = full.split("=")[1]
    expect = run(capsys, "m87", "radius=5", "detail=obsid", full)
    assert run(capsys, "m87", "radius=5", "detail=obsid", f"{prefix}={value}") == expect
    assert expect[0] == 0


def test_a_prefix_of_several_ciao_parameters_is_ambiguous(services, capsys):
    with pytest.raises(SystemExit) as info:
        find_cli.main(["m87", "d=5"])
    assert info.value.code == 2
    assert "ambiguous parameter 'd': dec, detail, download" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["search", "download"])
def test_ctrl_c_is_ciaos_line_and_exit_130(services, capsys, monkeypatch, tmp_path, where):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    target = "find_chandra_obsids" if where == "search" else "_download"
    monkeypatch.setattr(find_cli, target, interrupted)
    code, _, err = run(capsys, "m87", "download=all", "--outdir", str(tmp_path))
    assert (code, err) == (
        130,
        f"# find_chandra_obsid ({__version__}): Keyboard interrupt (control-c)\n",
    )


def test_both_resolvers_failing_is_one_line_one_part_each(services, capsys):
    services.fail("cadc", "garbage")
    services.fail("sesame", "error-page")
    code, _, err = run(capsys, "m87")
    assert code == 1 and len(err.splitlines()) == 1
    prefix = (
        f"# find_chandra_obsid ({__version__}): ERROR could not resolve 'm87': CADC name resolver ("
    )
    assert err.startswith(prefix) and err.count("failed:") == 2
    assert "; CDS Sesame name resolver (" in err
