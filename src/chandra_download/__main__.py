"""``python -m chandra_download``: the download_chandra_obsid command."""

import sys

from .cli import main

sys.exit(main())
