"""Download a dataset archive, verify its checksum, and extract it atomically into a cache folder.

Only ``urllib`` is used. The archive goes to a temporary file beside the target; on a checksum
mismatch or any failure nothing is left behind; the extracted folder appears under its final
name only once complete (extracted into a temporary folder, then renamed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recsae.errors import ConfigError, DataError
from recsae.io import make_temp_dir

DEFAULT_CACHE = Path("~/.cache/recsae/data")
"""Default cache folder; use it as ``--data-root`` afterwards."""


@dataclass(frozen=True)
class Source:
    """Where a dataset's archive lives and how to check it."""

    url: str
    """Download URL of the zip archive."""
    checksum: str
    """'<algorithm>:<hex digest>' of the archive (sha256 or md5)."""
    folder: str
    """Top-level folder inside the archive, and the folder created in the cache."""


# GroupLens publishes md5 digests for ml-100k and ml-1m; the ml-latest-small digest is the
# sha256 of the 2018 release. Override with --checksum if GroupLens re-packs a file.
SOURCES: dict[str, Source] = {
    "ml-100k": Source(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", "ml-100k"
    ),
    "ml-1m": Source(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip", "md5:c4d9eecfca2ab87c1945afe126590906", "ml-1m"
    ),
    "ml-latest-small": Source(
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        "sha256:696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        "ml-latest-small",
    ),
}


def _parse_checksum(checksum: str) -> tuple[str, str]:
    algo, sep, digest = checksum.partition(":")
    if not sep:  # a bare hex digest is sha256
        algo, digest = "sha256", checksum
    if algo not in ("sha256", "md5") or not digest or any(c not in "0123456789abcdef" for c in digest.lower()):
        raise ConfigError(f"bad checksum {checksum!r}: expected 'sha256:<hex>' or 'md5:<hex>'")
    return algo, digest.lower()


def _download(url: str, dest: Path, algo: str, timeout: float) -> str:
    """Stream ``url`` into ``dest``; return its hex digest."""
    hasher = hashlib.new(algo)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DataError(f"download failed: {err}", path=url) from None
    return hasher.hexdigest()


def _extract(archive: Path, folder: str, target: Path) -> None:
    """Extract ``archive`` so that ``target`` holds the content of its ``folder`` (or of its root)."""
    staging = make_temp_dir(target.parent, f".{target.name}.")
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                resolved = (staging / member).resolve()
                if not resolved.is_relative_to(staging.resolve()):
                    raise DataError(f"unsafe path {member!r} in archive", path=archive)
            zf.extractall(staging)
        content = staging / folder if (staging / folder).is_dir() else staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(content, target)
    except zipfile.BadZipFile as err:
        raise DataError(f"not a zip archive: {err}", path=archive) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def fetch(
    name: str,
    cache_dir: str | Path | None = None,
    url: str | None = None,
    checksum: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download dataset ``name`` into ``cache_dir/<folder>`` and return that folder.

    ``url``/``checksum`` override the table (a custom ``url`` needs a ``checksum`` unless the
    name is known). An existing folder is kept unless ``force``.
    """
    source = SOURCES.get(name)
    if source is None and (url is None or checksum is None):
        raise ConfigError(
            f"unknown dataset '{name}' for fetch: expected one of {', '.join(SOURCES)}, "
            "or pass both --url and --checksum"
        )
    folder = source.folder if source else name
    url = url or (source.url if source else "")
    algo, expected = _parse_checksum(checksum or (source.checksum if source else ""))
    root = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    target = root / folder
    if target.is_dir() and not force:
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{folder}.", suffix=".zip.tmp", dir=root)
    os.close(fd)
    archive = Path(tmp)
    try:
        digest = _download(url, archive, algo, timeout)
        if digest != expected:
            raise DataError(
                f"checksum mismatch: expected {algo} {expected}, got {digest}; nothing was kept "
                "(a changed upstream file? pass --checksum to accept it)",
                path=url,
            )
        _extract(archive, folder, target)
    finally:
        archive.unlink(missing_ok=True)
    return target
