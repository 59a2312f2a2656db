"""Gradient explanations: input-gradient maps (HSC) and Grad-CAM-style attention (UNet / VAE).

Input gradients say how strongly each pixel moves the anomaly score (Simonyan et al., 2014).
Grad-CAM (Selvaraju et al., 2017) instead weighs the channels of an intermediate layer by their
spatially averaged gradient and sums the weighted activations: coarser, but far less noisy.
Liu et al. (2020, "Towards Visually Explaining Variational Autoencoders") use it on a VAE's
encoder with the latent mean as the explained quantity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fcdd.explain.upsample import blur

ACTIVATIONS = ("relu", "abs")
#: how gradients weigh activations: Grad-CAM's channel weights, or HiResCAM's per-location ones
CAMS = ("gradcam", "hirescam")


def input_gradient_map(score_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, blur_std: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (B,) and |d score / d input| summed over channels (B, 1, H, W), optionally blurred.

    Samples must not interact (batch norm in eval mode), so the gradient of the summed scores
    holds each sample's own gradient.
    """
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        scores = score_fn(x)
        (grad,) = torch.autograd.grad(scores.sum(), x)
    heatmaps = grad.abs().sum(1, keepdim=True)
    return scores.detach(), blur(heatmaps, blur_std)


def layer_names(model: nn.Module) -> list[str]:
    """Names of every sub-module, as ``--layer`` accepts them."""
    return [name for name, _ in model.named_modules() if name]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; an unknown name lists the valid ones."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise ValueError(f"unknown layer {name!r} for {type(model).__name__}; valid layers: {', '.join(layer_names(model))}")
    return modules[name]


@contextlib.contextmanager
def capture_output(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Collects ``module``'s forward output under key 'output' while the context is open."""
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["output"] = output[0] if isinstance(output, (tuple, list)) else output

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor, activation: str = "relu", rms_normalise: bool = True,
             eps: float = 1e-12, cam: str = "gradcam") -> torch.Tensor:
    """Attention map (B, 1, h, w) from a layer's activations and the gradients at them.

    Gradients are first divided by their root mean square per sample, so the map's scale comes
    from the activations and does not depend on the magnitude of the explained scalar. With
    ``gradcam`` the channel weights are the spatially averaged gradients; with ``hirescam``
    (Draelos & Carin, 2020) each location keeps its own gradient, so a scalar that depends on
    one location (a local reconstruction error) is not spread over every location whose
    activations resemble it. The map is the weighted sum of activations over channels, then
    ReLU (only evidence for the scalar) or absolute value (evidence either way).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"attention activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if cam not in CAMS:
        raise ValueError(f"attention cam must be one of {', '.join(CAMS)}, got {cam!r}")
    if rms_normalise:
        rms = gradients.pow(2).flatten(1).mean(1).sqrt().view(-1, 1, 1, 1)
        gradients = gradients / (rms + eps)
    weights = gradients.mean(dim=(2, 3), keepdim=True) if cam == "gradcam" else gradients
    weighted = (weights * activations).sum(1, keepdim=True)
    return F.relu(weighted) if activation == "relu" else weighted.abs()


def attention_maps(
    forward_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    layer: nn.Module,
    images: torch.Tensor,
    activation: str = "relu",
    create_graph: bool = False,
    cam: str = "gradcam",
    rms_normalise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``forward_fn(images) -> (scores (B,), explained (B,))`` and Grad-CAM ``layer`` for ``explained``.

    Returns the scores and the attention maps up-sampled (bilinear) to the input size. With
    ``create_graph`` the maps stay differentiable in the weights (a loss on attention); else
    they are detached. A layer with flat (B, C) output gives a constant map; a layer the
    explained scalar does not depend on (a decoder layer for the latent mean) gives zeros.
    ``cam`` and ``rms_normalise`` are passed to ``grad_cam``.
    """
    with torch.enable_grad(), capture_output(layer) as store:
        # the input requires grad so the graph exists even when the weights are frozen
        x = images.detach().requires_grad_(True)
        scores, explained = forward_fn(x)
        if "output" not in store:
            raise RuntimeError("the attention layer was not used in the forward pass")
        acts = store["output"]
        (grads,) = torch.autograd.grad(explained.sum(), acts, create_graph=create_graph, allow_unused=True)
    if grads is None:
        grads = torch.zeros_like(acts)
    if acts.dim() == 2:
        acts, grads = acts[..., None, None], grads[..., None, None]
    maps = grad_cam(acts if create_graph else acts.detach(), grads if create_graph else grads.detach(), activation, rms_normalise, cam=cam)
    maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return (scores if create_graph else scores.detach()), maps
