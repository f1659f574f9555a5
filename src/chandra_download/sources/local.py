"""Local or mounted directories with the ``byobsid/`` layout. Files are copied, never linked."""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import SessionConfig
from ..errors import FileMissing, ObsIdNotFound, RangeNotSatisfiable, SourceError
from .base import Body, RemoteFile, Source, obsid_dir


class _FileBody(Body):
    def __init__(self, fh, start: int, total: int) -> None:
        self._fh = fh
        self.start = start
        self.total = total

    def read(self, n: int) -> bytes:
        return self._fh.read(n)

    def close(self) -> None:
        self._fh.close()


class LocalSource(Source):
    """A directory (or ``file://`` URL) holding ``byobsid/<digit>/<obsid>/``.

    Parameters
    ----------
    root : Path
        The directory up to, not including, ``byobsid/``.
    config : SessionConfig
        Session settings (unused, kept for a uniform constructor).
    """

    exact_sizes = True

    def __init__(self, root: Path, config: SessionConfig | None = None) -> None:
        self.root = Path(root).absolute()
        self.label = str(self.root)
        if not self.root.exists():
            raise SourceError(f"Mirror directory {self.root} does not exist")
        if not self.root.is_dir():
            raise SourceError(f"Mirror {self.root} is not a directory")

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        top = self.root / obsid_dir(obsid)
        if not top.is_dir():
            raise ObsIdNotFound(f"ObsId {obsid} not found under {self.root}")
        real_top = top.resolve()
        out: list[RemoteFile] = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                # A symlink leading out of the ObsId tree is not part of it.
                if path.is_symlink() and not path.resolve().is_relative_to(real_top):
                    continue
                if not path.is_file():
                    continue
                rel = path.relative_to(top).as_posix()
                out.append(RemoteFile(rel, path.stat().st_size, path.as_uri()))
        return out

    def _path(self, f: RemoteFile) -> Path:
        return Path(unquote(urlsplit(f.url).path))

    def identity(self, f: RemoteFile) -> tuple[str | None, str | None]:
        """The file's modification time as ``Last-Modified``, and an ETag of its size and
        mtime (as Apache makes them), for the records of what was fetched."""
        try:
            st = self._path(f).stat()
        except OSError:
            return None, None
        return formatdate(st.st_mtime, usegmt=True), f'"{st.st_size:x}-{st.st_mtime_ns:x}"'

    def size(self, f: RemoteFile) -> int:
        """The file's size now (the listing's when given)."""
        if f.size is not None:
            return f.size
        try:
            return self._path(f).stat().st_size
        except FileNotFoundError:
            raise FileMissing(f"{self._path(f)} has disappeared") from None
        except OSError as exc:
            raise SourceError(f"Cannot read {self._path(f)}: {exc.strerror}") from None

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        path = self._path(f)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise FileMissing(f"{path} has disappeared") from None
        except OSError as exc:
            raise SourceError(f"Cannot read {path}: {exc.strerror}") from None
        total = os.fstat(fh.fileno()).st_size
        if offset >= total and total > 0 or offset > total:
            fh.close()
            raise RangeNotSatisfiable(f"{path} has only {total} bytes", total)
        fh.seek(offset)
        return _FileBody(fh, offset, total)
