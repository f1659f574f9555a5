"""Job arrays: --shard K/N and shard=(K, N) take stable parts of the ObsId list."""

from __future__ import annotations

import pytest

from chandra_download import cli
from chandra_download.api import download
from chandra_download.shard import parse_shard, select


def test_parts_are_stable_disjoint_and_cover_the_list():
    ids = list(range(100, 117))
    parts = [select(ids, (k, 5)) for k in range(1, 6)]
    assert sorted(sum(parts, [])) == ids
    assert parts[0] == [100, 105, 110, 115]  # by position: K, K+N, ...
    assert {len(p) for p in parts} <= {3, 4}
    assert parts == [select(list(ids), (k, 5)) for k in range(1, 6)]


@pytest.mark.parametrize("text", ["4/3", "0/3", "3", "a/b", "1/0", "-1/3", "1/3/4", ""])
def test_a_bad_shard_is_exit_2_with_one_line(text, capsys):
    assert cli.main(["1843", f"--shard={text}", "--mirror", "http://127.0.0.1:9/x/"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard" in err[0], err


def test_parse():
    assert parse_shard(" 2 / 7 ") == (2, 7)
    with pytest.raises(ValueError, match="between 1 and N"):
        parse_shard("4/3")


def test_the_api_fetches_only_its_shard(archive_http, tmp_path):
    results = download(
        [1843, 2749, 6298], "oif", mirror=archive_http.base_url, outdir=tmp_path, shard=(2, 2)
    )
    assert [r.obsid for r in results] == [2749]
    assert results.ok
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["2749"]
    with pytest.raises(ValueError):
        download([1843], mirror=archive_http.base_url, outdir=tmp_path, shard=(3, 2))


def test_the_command_line_fetches_only_its_shard(archive_http, tmp_path, capsys):
    args = ["1843,2749,6298", "oif", "--mirror", archive_http.base_url, "--outdir", str(tmp_path)]
    assert cli.main([*args, "--shard", "3/3"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["6298"]
    assert "ObsId 6298" in capsys.readouterr().out


def test_an_empty_shard_does_nothing_and_succeeds(archive_http, tmp_path, capsys):
    args = ["1843", "--mirror", archive_http.base_url, "--outdir", str(tmp_path)]
    assert cli.main([*args, "--shard", "2/4"]) == 0
    assert "empty" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
