"""``python -m chandra_download``: the download_chandra_obsid command."""

from .cli import run

run()
