"""``fcdd serve RUN [--host 127.0.0.1 --port 8000]``: HTTP API and upload page for a trained model."""

from __future__ import annotations

from fcdd.commands.base import add_trust_flag, command
from fcdd.preprocess import MAX_UPLOAD_PIXELS, UPLOAD_FORMATS, format_names
from fcdd.serve import Limits, bound_text

DEFAULTS = Limits()


def _epilog() -> str:
    return (f"Uploads must be {format_names(UPLOAD_FORMATS)} (detected from the bytes; anything else gets 415). "
            "The body is counted while it arrives (413 as soon as it passes --max-upload-mb, chunked too) and must "
            "arrive within --read-timeout (408); dimensions are checked from the header before decoding (413). "
            f"With the defaults, {bound_text(DEFAULTS)} (input: a 3 x 224 x 224 float tensor); each term scales "
            "with the flag of its name, and the start-up line states the bound for the model served.")


def _arguments(p) -> None:
    p.epilog = _epilog()
    p.add_argument("run", help="run folder (or its snapshot.pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--threshold", type=float, default=None, help="image verdict threshold (default: the calibrated one)")
    p.add_argument("--pixel-threshold", type=float, default=None, help="heatmap threshold of the defect mask (default: calibrated)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MiB (default: 20)")
    p.add_argument("--max-side", type=int, default=DEFAULTS.max_side, help=f"largest image side in pixels (default: {DEFAULTS.max_side})")
    p.add_argument("--max-pixels", type=int, default=MAX_UPLOAD_PIXELS,
                   help=f"largest decoded image in pixels, checked from the header before decoding (default: {MAX_UPLOAD_PIXELS}, 4096 x 4096)")
    p.add_argument("--read-timeout", type=float, default=DEFAULTS.read_timeout_s,
                   help=f"seconds an upload may take to arrive in full, else 408 (default: {DEFAULTS.read_timeout_s:g})")
    p.add_argument("--decode-slots", type=int, default=DEFAULTS.decode_slots,
                   help=f"images decoded (or overlays drawn) at once; bounds memory with --max-pixels (default: {DEFAULTS.decode_slots})")
    p.add_argument("--max-connections", type=int, default=DEFAULTS.max_connections,
                   help=f"open connections; beyond them 503 (default: {DEFAULTS.max_connections})")
    p.add_argument("--queue", type=int, default=DEFAULTS.queue_size, help=f"requests that may wait for the model before 503 (default: {DEFAULTS.queue_size})")
    p.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch, help=f"requests run together in one forward pass (default: {DEFAULTS.max_batch})")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    add_trust_flag(p)


def limits_from_args(args) -> Limits:
    """The service's limits from the flags; ValueError naming the flags when one is not positive."""
    values = {"--max-upload-mb": args.max_upload_mb, "--max-side": args.max_side, "--max-pixels": args.max_pixels,
              "--read-timeout": args.read_timeout, "--decode-slots": args.decode_slots,
              "--max-connections": args.max_connections, "--queue": args.queue, "--max-batch": args.max_batch}
    bad = [flag for flag, value in values.items() if not value > 0]
    if bad:
        raise ValueError(f"{', '.join(bad)} must be positive")
    return Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_side=args.max_side, max_pixels=args.max_pixels,
                  queue_size=args.queue, max_batch=args.max_batch, decode_slots=args.decode_slots,
                  read_timeout_s=args.read_timeout, max_connections=args.max_connections)


@command("serve", "serve a trained model over HTTP: POST /predict, GET /health, docs and an upload page at /", _arguments)
def cmd_serve(args) -> None:
    try:
        from fcdd.serve.app import serve
    except ImportError as err:
        raise ValueError(f"serving needs the serve extra ({err.name} is missing): pip install 'fcdd[serve]'") from None
    serve(args.run, args.host, args.port, args.device, limits_from_args(args), args.threshold, args.pixel_threshold, args.log_level)
