"""Run records shared by ``fixpoint bench``/``perf``, figure scripts and deep training runs.

Provenance (versions, git commit, platform) for every JSON header, a converter of numpy values to
JSON, and atomic file writes: every output file is written to a temporary file in the same folder
and moved into place with ``os.replace``, so a reader (or a run killed at any moment) never sees a
truncated file. ``atomic_write_files`` moves several files into place only after all of them were
written, so a CSV never appears without its JSON header.

numpy only (no numba, no torch): every layer may import it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "PROVENANCE_PACKAGES",
    "provenance",
    "jsonable",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_files",
    "atomic_open",
    "dumps_header",
]

PROVENANCE_PACKAGES = (
    "fixpoint-rl",
    "numpy",
    "scipy",
    "numba",
    "pandas",
    "torch",
    "gymnasium",
    "transformers",
)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, Any]:
    """Versions of ``packages``, git commit, Python and platform, for JSON headers."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_sha": _git_sha(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths, tuples and generators made JSON-serialisable.

    A ``numpy.random.Generator`` is recorded by its bit generator's name (never a memory address).
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.random.Generator):
        return f"numpy.random.Generator({type(value.bit_generator).__name__})"
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only (0600); output files get the usual mode
_FILE_MODE = 0o666 & ~_current_umask()


def _temp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, _FILE_MODE)
    return Path(name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    return atomic_write_files({path: data})[0]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_files(contents: Mapping[str | os.PathLike, bytes | str]) -> list[Path]:
    """Write every file to a temporary sibling first, then move all of them into place.

    Either every file is replaced or (on an error or interrupt before the renames) none is, and
    no temporary file is left behind.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in contents.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = _temp_path(target)
            staged.append((temp, target))
            payload = data.encode("utf-8") if isinstance(data, str) else data
            with open(temp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        for temp, target in staged:
            os.replace(temp, target)
    except BaseException:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
        raise
    return [target for _, target in staged]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary sibling of ``path`` for binary writing; on a clean exit fsync it and move
    it onto ``path`` with ``os.replace``; on an exception (or interrupt) remove it.

    For large payloads written by a library straight to a file (``torch.save(state, handle)``),
    without holding a second copy in memory as ``atomic_write_bytes`` would.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(target)
    try:
        with open(temp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def dumps_header(header: Mapping[str, Any]) -> str:
    """The JSON text of a header (provenance merged in by the caller), indented, newline-terminated."""
    return json.dumps(jsonable(header), indent=2) + "\n"
