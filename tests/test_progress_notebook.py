"""A headless notebook run: in Jupyter, download() shows a progress display by default (and
none with progress=False); outside it the library prints nothing."""

from __future__ import annotations

import re

import nbclient
import nbformat


def _run(code: str) -> list[dict]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3")
    client.execute()
    return nb.cells[0].outputs


def test_notebook_gets_a_progress_display_that_ends_full(archive_http, tmp_path):
    code = (
        "from chandra_download import download\n"
        f"r = download(1843, 'evt2,oif', {archive_http.base_url!r}, outdir={str(tmp_path / 'a')!r})\n"
        "print('ok', r.ok)\n"
        f"r = download(1843, 'evt2,oif', {archive_http.base_url!r}, outdir={str(tmp_path / 'b')!r},"
        " progress=False)\n"
        "print('ok', r.ok)\n"
    )
    outputs = _run(code)
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1  # one display, updated in place; none for progress=False
    html = shown[0]["data"]["text/html"]
    done, total = map(int, re.search(r'value="(\d+)" max="(\d+)"', html).groups())
    assert done == total > 0  # the final state: 100 %, not past it
    text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert text == "ok True\nok True\n"  # no log lines: the library is quiet unless asked
