"""Downloads against a real HTTP server on loopback, serving small files the test makes."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest

from fcdd.config import Config
from fcdd.data import DataError, load_data
from fcdd.data.download import Resource, download


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def idx_bytes(arr):
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def test_download_idx_files_then_train_reader(server, tmp_path):
    served, url = server
    rng = np.random.default_rng(0)
    resources = []
    for name, arr in (
        ("train-images-idx3-ubyte.gz", rng.integers(0, 255, (6, 28, 28))),
        ("train-labels-idx1-ubyte.gz", np.arange(6) % 2),
        ("t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (4, 28, 28))),
        ("t10k-labels-idx1-ubyte.gz", np.arange(4) % 2),
    ):
        data = idx_bytes(arr)
        (served / name).write_bytes(data)
        resources.append(Resource(url + name, hashlib.md5(data).hexdigest()))
    target = tmp_path / "datadir"
    download("mnist", target, resources)
    splits = load_data(Config(dataset="mnist", data=str(target), category="1", image_size=28))
    assert len(splits.train) == 3 and len(splits.test) == 4


def test_archive_is_checked_and_unpacked(server, tmp_path):
    served, url = server
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = b"hello"
        info = tarfile.TarInfo("cifar-10-batches-py/readme.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (served / "c.tar.gz").write_bytes(buffer.getvalue())
    good = Resource(url + "c.tar.gz", hashlib.md5(buffer.getvalue()).hexdigest(), extract=True)
    download("cifar10", tmp_path / "d", [good])
    assert (tmp_path / "d" / "cifar-10-batches-py" / "readme.txt").read_bytes() == b"hello"
    bad = Resource(url + "c.tar.gz", "0" * 32, extract=True)
    with pytest.raises(DataError, match="checksum mismatch"):
        download("cifar10", tmp_path / "e", [bad])
    assert not list((tmp_path / "e").glob("*.tar.gz"))  # nothing half-written left behind


def test_offline_message(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="may be offline"):
        download("mnist", tmp_path, [Resource(f"http://127.0.0.1:{port}/x.gz", "0" * 32)])
