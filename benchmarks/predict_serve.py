"""Using a trained model: prediction throughput end to end vs the raw model, and serving latency.

``predict``: for each setting, a snapshot (weights do not change the timing, so the net is
initialised, not trained) and a list of image FILES. End to end is ``Detector.score`` +
heatmaps on the files (threaded decoding and resizing, prefetched while the model runs);
raw is ``Detector.forward`` on the same images already prepared in memory, same batch size,
timed in the same process, alternating with the end-to-end passes (best of ``--repeats``).
``ratio`` = end-to-end images/s / raw images/s (target >= 0.8).

``serve``: a real ``fcdd serve`` process on 127.0.0.1 and ``--clients`` threads posting image
files (a bounded number of requests in all); latency percentiles and requests/s.

    .venv/bin/python benchmarks/predict_serve.py --out benchmarks/results/predict_serve.json
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data.base import IMAGE_SUFFIXES, load_images
from fcdd.data.synthetic import generate
from fcdd.data.transforms import channel_stats
from fcdd.detector import Detector
from fcdd.io import atomic_torch_save, atomic_write_json
from fcdd.methods import build_method
from fcdd.rundir import snapshot_of

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def make_snapshot(config: Config, files: list[Path], channels: int, path: Path) -> Path:
    """An untrained model with the files' normalisation: the timing is the trained model's."""
    torch.manual_seed(0)
    method = build_method(config, channels).eval()
    mean, std = channel_stats(load_images(files[:32], channels, config.image_size))
    method.set_input_normalisation(mean, std)
    return atomic_torch_save(path, snapshot_of(config, method, channels, {}, {}))


def settings(tmp: Path, n_small: int) -> list[dict]:
    out = []
    synthetic = generate(tmp / "synthetic", "gravel", size=128, n_train=n_small, n_test_good=0, n_test_per_defect=0)
    out.append({
        "name": "demo model (cnn32 width 0.5 @ 64 px) on 128 px synthetic PNGs",
        "config": Config(net="cnn32", width=0.5, image_size=64, pretrained="none", eval_batch_size=32),
        "files": sorted((synthetic / "train" / "good").glob("*.png")), "channels": 3,
    })
    bottle = SHARED / "mvtec_bottle_256"
    if bottle.is_dir():
        files = sorted(p for p in bottle.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and "ground_truth" not in p.parts)
        out.append({
            "name": "paper model (vgg11 @ 224 px, untrained weights) on mvtec_bottle_256 PNGs",
            "config": Config(net="vgg11", width=1.0, image_size=224, pretrained="none", eval_batch_size=16),
            "files": files[:64], "channels": 3,
        })
    return out


def time_predict(setting: dict, tmp: Path, repeats: int) -> dict:
    config, files = setting["config"], setting["files"]
    snapshot = make_snapshot(config, files, setting["channels"], tmp / f"{config.net}-{config.image_size}.pt")
    detector = Detector.load(snapshot, device="cpu")
    prepared = detector.prepare(files)
    bs = detector.batch_size
    detector.score(files[:bs])  # warm-up (thread pool, allocator, kernels)
    e2e, raw = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        scores, heatmaps = detector.infer(files)
        e2e.append(len(files) / (time.perf_counter() - started))
        started = time.perf_counter()
        for i in range(0, len(prepared), bs):
            detector.forward(prepared[i : i + bs])
        raw.append(len(files) / (time.perf_counter() - started))
    assert heatmaps.shape == (len(files), 1, config.image_size, config.image_size)
    return {
        "setting": setting["name"], "images": len(files), "batch_size": bs, "decode_workers": detector.workers,
        "torch_threads": torch.get_num_threads(),
        "end_to_end_images_per_s": max(e2e), "raw_forward_images_per_s": max(raw), "ratio": max(e2e) / max(raw),
        "all_end_to_end": [round(v, 2) for v in e2e], "all_raw": [round(v, 2) for v in raw],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_serve(setting: dict, tmp: Path, clients: int, requests: int) -> dict:
    import httpx

    config, files = setting["config"], setting["files"]
    snapshot = make_snapshot(config, files, setting["channels"], tmp / "serve.pt")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "fcdd.cli", "serve", str(snapshot), "--port", str(port), "--device", "cpu",
                                "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fcdd serve did not start")
            time.sleep(0.2)
        payloads = [(p.name, p.read_bytes()) for p in files[:32]]
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        counter = iter(range(requests))

        def client() -> None:
            with httpx.Client(timeout=60) as session:
                for i in counter:
                    name, data = payloads[i % len(payloads)]
                    started = time.perf_counter()
                    response = session.post(f"{url}/predict", files={"file": (name, data, "image/png")})
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        for name, data in payloads[:4]:  # warm-up
            httpx.post(f"{url}/predict", files={"file": (name, data, "image/png")}, timeout=60)
        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        health = httpx.get(f"{url}/health").json()
    finally:
        process.terminate()
        process.wait(timeout=20)
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "setting": setting["name"], "clients": clients, "requests": len(latencies), "statuses": statuses,
        "latency_ms": {"p50": 1000 * pct(0.5), "p95": 1000 * pct(0.95), "mean": 1000 * statistics.mean(ordered), "max": 1000 * ordered[-1]},
        "requests_per_s": len(latencies) / wall, "batches": health["batches"], "images": health["images"],
        "response": "score, verdict, overlay and heatmap PNGs (base64)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "predict_serve.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=256, help="synthetic files for the small setting")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cases = settings(tmp, args.files)
        predict = [time_predict(case, tmp, args.repeats) for case in cases]
        for row in predict:
            print(f"predict {row['setting']}: {row['end_to_end_images_per_s']:.1f} img/s end to end, "
                  f"{row['raw_forward_images_per_s']:.1f} raw, ratio {row['ratio']:.2f}", flush=True)
        serve = time_serve(cases[0], tmp, args.clients, args.requests)
        print(f"serve: p50 {serve['latency_ms']['p50']:.1f} ms, p95 {serve['latency_ms']['p95']:.1f} ms, "
              f"{serve['requests_per_s']:.1f} req/s, statuses {serve['statuses']}", flush=True)
    atomic_write_json(args.out, {
        "benchmark": "predict_serve",
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(), "python": platform.python_version(),
                    "torch": torch.__version__, "note": "CPU shared with other processes; see load_average_at_end"},
        "predict": predict,
        "serve": serve,
        "command": "python benchmarks/predict_serve.py " + " ".join(sys.argv[1:]),
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
