"""``fcdd layers --arch NAME``: the named modules of a network, for ``--layer``."""

from __future__ import annotations

import torch

from fcdd.commands.base import command
from fcdd.methods.attention_ae import default_layer
from fcdd.models import NETS, build_net
from fcdd.models.autoencoders import ENCODER_DECODERS, build_autoencoder


def _arguments(p) -> None:
    p.add_argument("--arch", required=True, help="encoder-decoder or network (see `fcdd list`)")
    p.add_argument("--image-size", type=int, default=64, help="input side used to show output shapes (default: 64)")
    p.add_argument("--channels", type=int, default=3, help="input channels (default: 3)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default: 1.0)")


def layer_table(arch: str, image_size: int = 64, channels: int = 3, width: float = 1.0) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """(name, module type, output shape for one image) of every named module of ``arch`` that
    produces a tensor in the forward pass: the modules ``--layer`` can explain (containers the
    forward pass only indexes, such as a UNet's ``decoder`` list, are left out)."""
    if arch in ENCODER_DECODERS:
        net = build_autoencoder(arch, channels, image_size, width=width)
    elif arch in NETS:
        net = build_net(arch, channels, image_size, width=width, pretrained="none")
    else:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(ENCODER_DECODERS.names() + NETS.names())}")
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in net.named_modules():
        if not name:
            continue

        def hook(_m, _i, output, name=name):
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])

        handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        net.eval()(torch.zeros(1, channels, image_size, image_size))
    for handle in handles:
        handle.remove()
    return [(name, type(module).__name__, shapes[name]) for name, module in net.named_modules() if name in shapes]


@command("layers", "list a network's named layers and their output shapes (for attention-ae --layer)", _arguments)
def cmd_layers(args) -> None:
    rows = layer_table(args.arch, args.image_size, args.channels, args.width)
    default = None
    if args.arch in ENCODER_DECODERS:
        default = default_layer(build_autoencoder(args.arch, args.channels, args.image_size, width=args.width))
    width = max(len(name) for name, _, _ in rows)
    for name, kind, shape in rows:
        shown = "x".join(map(str, shape)) if shape else "-"
        mark = "  (default attention layer)" if name == default else ""
        print(f"{name:<{width}}  {kind:<14} {shown}{mark}")
