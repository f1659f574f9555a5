"""Sphinx configuration of chandra-download's documentation (``sphinx-build -W -b html docs out``)."""

from __future__ import annotations

import sys
from pathlib import Path

# Document the tree beside this directory, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from chandra_download import __version__  # noqa: E402

project = "chandra-download"
author = "the chandra-download developers"
copyright = "2026, the chandra-download developers"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "numpydoc"]
exclude_patterns = ["_build"]
nitpicky = False

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
numpydoc_show_class_members = False  # autodoc lists them; no autosummary stubs
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}  # offline builds: no inventories

html_theme = "alabaster"
html_static_path: list[str] = []
