"""What the command's own process sets up before it works (never a library caller's)."""

from __future__ import annotations

import pytest

from chandra_download import cli


@pytest.mark.parametrize("given, kept", [(None, "1"), ("4", "4")])
def test_the_command_starts_no_blas_threads(
    monkeypatch: pytest.MonkeyPatch, given: str | None, kept: str
) -> None:
    """numpy is imported for the FITS sums of large files; its OpenBLAS threads would only
    cost CPU (the command multiplies no matrices). A caller's own setting is kept."""
    if given is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", given)
    seen: list[str | None] = []
    monkeypatch.setattr(
        cli, "main", lambda: seen.append(cli.os.environ.get("OPENBLAS_NUM_THREADS")) or 0
    )
    monkeypatch.setattr(cli, "_tune_gc", lambda: None)  # (the test process's gc is its own)
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == 0
    assert seen == [kept]  # (set before main, so before numpy's import)
