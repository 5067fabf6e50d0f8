"""Downloads that never leave a partial file, and zip extraction that refuses members escaping the folder."""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

import requests
from tqdm.auto import tqdm

from going_modular.common import settings

_TIMEOUT_S = (30, 30)  # (connect, read): long enough for a slow link, short enough to notice being offline


class DownloadError(RuntimeError):
    """The server answered a download with an HTTP error status (404, 500, ...)."""


class DataError(ValueError):
    """Data that cannot be used as it is: a damaged download or image, a stray file, mismatched class folders."""


def download_file(url: str, path: str | os.PathLike, *, sha256: str | None = None) -> Path:
    """Download one file to ``path`` unless it is already there; return ``path``.

    Raises:
        ConnectionError: offline, a timeout, or the download broke off (the message says how to get the file by hand).
        DownloadError: the server answered with an HTTP error status.
        DataError: the file's SHA-256 is not ``sha256`` (hex).
    """
    path = Path(path)
    if path.is_file():
        print(f"[INFO] {settings.display_path(path)} already exists, skipping download.")
    else:
        print(f"[INFO] Downloading {url} to {settings.display_path(path)}")
        fetch(url, path, sha256=sha256, manual_hint=f"download {url} with a browser and save it as {path}")
    return path


def fetch(url: str, path: Path, *, sha256: str | None, manual_hint: str) -> None:
    """Stream ``url`` to a temporary file beside ``path``; rename it to ``path`` once complete and checked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    digest = hashlib.sha256()
    try:  # requests, unlike torch.hub.download_url_to_file, times out and refuses a body cut short
        with os.fdopen(handle, "wb") as file, requests.get(url, stream=True, timeout=_TIMEOUT_S) as response:
            if not response.ok:
                raise DownloadError(f"Downloading {url} failed with HTTP status {response.status_code} "
                                    f"({response.reason}). Check the URL, or {manual_hint}.")
            size = int(response.headers.get("Content-Length", 0)) or None
            with tqdm.wrapattr(file, "write", total=size, desc=path.name) as progress:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    progress.write(chunk)
                    digest.update(chunk)
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DataError(f"Checksum mismatch for {url}: expected SHA-256 {sha256.lower()}, got {digest.hexdigest()}"
                            f". The file changed on the server or arrived damaged; try again, or {manual_hint}.")
        os.replace(partial, path)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
        raise ConnectionError(f"Could not download {url} ({type(error).__name__}: no connection, a timeout, or the "
                              f"download broke off). Try again when online, or {manual_hint}.") from error
    finally:
        Path(partial).unlink(missing_ok=True)


def extract_zip(zip_path: Path, destination: Path, url: str) -> None:
    """Extract ``zip_path`` (from ``url``) into ``destination``. Raises DataError if it is not a zip, is damaged or
    empty, or a member would be written outside ``destination`` ("zip slip"), checked before anything is written."""
    if not zipfile.is_zipfile(zip_path):
        raise DataError(f"{url} did not send a zip archive (it starts with {zip_path.read_bytes()[:60]!r}); the "
                        f"server may have sent an error page. Check the URL in a browser.")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            if not archive.namelist():
                raise DataError(f"The zip archive from {url} is empty. Check the URL in a browser.")
            for name in archive.namelist():  # zipfile would quietly rewrite such a name: refuse the archive instead
                posix = PurePosixPath(name.replace("\\", "/"))  # zips made on Windows may use backslashes
                if posix.is_absolute() or PureWindowsPath(name).drive or ".." in posix.parts:
                    raise DataError(f"Refusing to extract archive member {name!r}: it would be written outside the "
                                    f"destination folder. The archive is unsafe; nothing was extracted.")
            archive.extractall(destination)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataError(f"The zip archive from {url} is damaged ({error}). Download it again.") from error
