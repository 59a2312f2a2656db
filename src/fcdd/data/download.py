"""Downloading the torchvision-style data sets (MNIST, Fashion-MNIST, EMNIST, CIFAR) into ``--datadir``.

Used only with ``--download`` by users who are online; each file is fetched to a temporary name,
checked against its MD5 and then moved into place, archives are unpacked, and a failure (e.g. no
network) says so plainly.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fcdd.data.base import DataError
from fcdd.runtime import progress_bar


@dataclass(frozen=True)
class Resource:
    url: str
    md5: str
    #: unpack into the target folder (tar.gz / zip)
    extract: bool = False


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
RESOURCES: dict[str, list[Resource]] = {
    "mnist": [
        Resource(_MNIST + "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        Resource(_MNIST + "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        Resource(_MNIST + "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        Resource(_MNIST + "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
    "fmnist": [
        Resource(_FASHION + "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Resource(_FASHION + "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        Resource(_FASHION + "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        Resource(_FASHION + "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ],
    "cifar10": [Resource("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", True)],
    "cifar100": [Resource("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", True)],
    "emnist": [Resource("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e", True)],
}


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(resource: Resource, folder: Path, timeout: float = 30.0) -> Path:
    """One file into ``folder`` (skipped when present with the right checksum)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / resource.url.rsplit("/", 1)[-1]
    if target.is_file() and md5sum(target) == resource.md5:
        return target
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(resource.url, timeout=timeout) as response, open(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = md5sum(tmp)
        if got != resource.md5:
            raise DataError(f"{resource.url}: checksum mismatch (got {got}, expected {resource.md5}); not saved")
        tmp.replace(target)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DataError(
            f"cannot download {resource.url} ({getattr(err, 'reason', err)}); this machine may be offline: "
            f"put the files into {folder} by hand and pass --data {folder}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def extract(archive: Path, folder: Path) -> None:
    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
    elif archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder)
        # EMNIST ships its IDX files inside a 'gzip/' folder
        inner = folder / "gzip"
        if inner.is_dir():
            for item in inner.iterdir():
                shutil.move(str(item), folder / item.name)
            inner.rmdir()
    else:
        raise DataError(f"{archive}: unknown archive type")


def download(dataset: str, root: str | Path, resources: list[Resource] | None = None) -> Path:
    """Fetch (and unpack) ``dataset`` into ``root``; returns ``root``."""
    if resources is None:
        if dataset not in RESOURCES:
            raise DataError(f"{dataset} cannot be downloaded; choose one of {', '.join(sorted(RESOURCES))}")
        resources = RESOURCES[dataset]
    root = Path(root)
    for resource in resources:
        path = fetch(resource, root)
        if resource.extract:
            extract(path, root)
    return root
