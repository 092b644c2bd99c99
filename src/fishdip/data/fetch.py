"""Download public datasets into the cache, verifying checksums."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fishdip.errors import DataError
from fishdip.paths import cache_dir

_PFN = "https://raw.githubusercontent.com/Coopercoppers/PFN/6173b3e6b048d1307766ee5d2f8178b30d6675b2/data/CONLL04"
_TABLERT = "https://raw.githubusercontent.com/YoumiMa/TablERT-CNN/055333c2b0dfff48fbab8fa73367cc0766c89862/data/datasets/conll04"


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name inside the dataset folder
    url: str
    sha256: str


SOURCES: dict[str, list[RemoteFile]] = {
    "conll04": [
        RemoteFile("conll04_train.json", f"{_PFN}/train_triples.json",
                   "65c52d5b6134c72c44277c74c5ecb354bf33aa352fc7b856edf6bda0bb436eea"),
        RemoteFile("conll04_dev.json", f"{_PFN}/dev_triples.json",
                   "3965a5110a79671fb74a78c0fd0113c4da6583c3833bd418c1ca414bb491e010"),
        RemoteFile("conll04_test.json", f"{_PFN}/test_triples.json",
                   "347f45cf181b5641d2373248a1af0592954415234f72536835dde1df1b504556"),
        RemoteFile("conll04_types.json", f"{_TABLERT}/conll04_types.json",
                   "9244d21d2640430f03eda97f59ce3e0a28a766964b1c04683c80656b5e505ad8"),
    ],
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(remote: RemoteFile, target: Path, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        got = sha256(Path(tmp))
        if got != remote.sha256:
            raise DataError(f"{remote.url}: checksum mismatch (expected {remote.sha256}, got {got})")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def fetch(name: str, dest_root: Path | None = None, timeout: float = 30.0) -> Path:
    """Download dataset ``name`` into ``dest_root/<name>/`` (default: the cache); returns the folder.

    Files already present with the right checksum are kept.
    """
    if name not in SOURCES:
        raise DataError(f"no public source known for {name!r}; fetchable: {', '.join(SOURCES)}")
    folder = (dest_root or cache_dir() / "data") / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot make the dataset folder ({exc.strerror or exc})") from None
    for remote in SOURCES[name]:
        target = folder / remote.name
        if target.is_file() and sha256(target) == remote.sha256:
            continue
        try:
            _download(remote, target, timeout)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DataError(
                f"could not download {remote.url} ({exc}). If this machine is offline, copy "
                f"{', '.join(r.name for r in SOURCES[name])} into {folder} by hand, or point "
                f"--data-dir / FISHDIP_DATA_DIR at a folder that holds {name}/."
            ) from None
    return folder
