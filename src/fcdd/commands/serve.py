"""``fcdd serve RUN [--host 127.0.0.1 --port 8000]``: HTTP API and upload page for a trained model."""

from __future__ import annotations

from fcdd.commands.base import command


def _arguments(p) -> None:
    p.add_argument("run", help="run folder (or its snapshot.pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--threshold", type=float, default=None, help="image verdict threshold (default: the calibrated one)")
    p.add_argument("--pixel-threshold", type=float, default=None, help="heatmap threshold of the defect mask (default: calibrated)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MiB (default: 20)")
    p.add_argument("--max-side", type=int, default=8192, help="largest image side in pixels (default: 8192)")
    p.add_argument("--queue", type=int, default=32, help="requests that may wait for the model before 503 (default: 32)")
    p.add_argument("--max-batch", type=int, default=8, help="requests run together in one forward pass (default: 8)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


@command("serve", "serve a trained model over HTTP: POST /predict, GET /health, docs and an upload page at /", _arguments)
def cmd_serve(args) -> None:
    try:
        from fcdd.serve.app import Limits, serve
    except ImportError as err:
        raise ValueError(f"serving needs the serve extra ({err.name} is missing): pip install 'fcdd[serve]'") from None
    if args.max_upload_mb <= 0 or args.queue < 1 or args.max_batch < 1 or args.max_side < 1:
        raise ValueError("--max-upload-mb, --max-side, --queue and --max-batch must be positive")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_side=args.max_side,
                    queue_size=args.queue, max_batch=args.max_batch)
    serve(args.run, args.host, args.port, args.device, limits, args.threshold, args.pixel_threshold, args.log_level)
