"""Every SessionConfig field is checked with one clear error (issue 18.5): ``chunk_size=0``
was accepted, then every file failed "got 0 of N bytes"."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path

import pytest

from chandra_download import SessionConfig, cli, download

# (field, a bad value, the error, words the message must hold)
BAD = [
    ("jobs", 0, ValueError, "at least 1"),
    ("jobs", 2.0, TypeError, "an int"),
    ("jobs", True, TypeError, "an int"),
    ("retries", -1, ValueError, "at least 0"),
    ("retries", "5", TypeError, "an int"),
    ("timeout", 0, ValueError, "more than 0"),
    ("timeout", -1.5, ValueError, "more than 0"),
    ("timeout", math.nan, ValueError, "finite"),
    ("timeout", math.inf, ValueError, "finite"),
    ("timeout", "60", TypeError, "a number"),
    ("backoff", -0.1, ValueError, "at least 0"),
    ("backoff_max", -1, ValueError, "at least 0"),
    ("backoff_max", math.nan, ValueError, "finite"),
    ("verify_checksums", "no", TypeError, "True or False"),
    ("ca_bundle", 3, TypeError, "a string or None"),
    ("insecure", 1, TypeError, "True or False"),
    ("chunk_size", 0, ValueError, "at least 1"),
    ("chunk_size", -4096, ValueError, "at least 1"),
    ("chunk_size", 1.5, TypeError, "an int"),
    ("split_threshold", -1, ValueError, "at least 0"),
    ("profile", 7, TypeError, "a string or None"),
    ("endpoint_url", b"http://x", TypeError, "a string or None"),
    ("use_netrc", None, TypeError, "True or False"),
    ("fsync", "yes", TypeError, "True or False"),
    ("min_rate", -1, ValueError, "at least 0"),
    ("min_rate", math.inf, ValueError, "finite"),
    ("repair", 0, TypeError, "True or False"),
    ("pipeline_depth", 0, ValueError, "at least 1"),
    ("pipeline_depth", 2.5, TypeError, "an int"),
]


@pytest.mark.parametrize(("name", "value", "error", "words"), BAD)
def test_a_bad_value_is_one_clear_error_naming_the_field(name, value, error, words):
    with pytest.raises(error) as info:
        SessionConfig(**{name: value})
    message = str(info.value)
    assert message.startswith(f"{name} must be ") and words in message
    assert "\n" not in message
    with pytest.raises(error):  # a copy is checked as well
        replace(SessionConfig(), **{name: value})


def test_every_field_has_a_bad_value_above():
    assert {f.name for f in fields(SessionConfig)} <= {name for name, *_ in BAD}


def test_good_values_and_edges_are_accepted():
    cfg = SessionConfig(
        jobs=1, retries=0, timeout=5, backoff=0, backoff_max=0, chunk_size=1,
        split_threshold=0, min_rate=0, ca_bundle=None, profile="p", endpoint_url="http://e",
    )  # fmt: skip
    assert cfg.timeout == 5 and cfg.chunk_size == 1
    assert SessionConfig(ca_bundle=Path("/etc/ca.pem")).ca_bundle == "/etc/ca.pem"  # type: ignore[arg-type]


def test_download_refuses_chunk_size_zero_before_any_request(tmp_path: Path):
    with pytest.raises(ValueError, match="chunk_size must be at least 1, not 0"):
        download([1843], mirror=str(tmp_path / "nowhere"), outdir=tmp_path, chunk_size=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "shown"),
    [("--timeout=0", "timeout must be more than 0"), ("--timeout=nan", "finite number"),
     ("--jobs=0", "jobs must be at least 1"), ("--retries=-1", "retries must be at least 0")],
)  # fmt: skip
def test_the_command_line_shows_it_as_one_error_line(option, shown, tmp_path, capsys):
    assert cli.main(["1843", option, "--outdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ERROR" in err[0] and shown in err[0], err
