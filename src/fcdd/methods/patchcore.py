"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

No training: every location of every nominal training image is described by a locally aware
patch feature of a frozen ImageNet backbone (``fcdd.neighbours.PatchFeatures``); a greedy
k-centre coreset of them (``--coreset``, a tenth by default) is the memory bank. A test patch's
anomaly is its distance to the nearest bank feature; the map is upsampled to the input and
smoothed with a Gaussian (the paper's sigma 4). The image score is the largest patch distance,
re-weighted as in the paper by how isolated its nearest bank feature is among that feature's own
``--neighbourhood`` nearest bank features (``--patchcore-score max``: not re-weighted).

The bank is a buffer, so it travels in the snapshot; a loaded snapshot resizes the buffer to
the stored bank before copying it.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F

from fcdd.data.transforms import blur, to_float
from fcdd.methods.base import METHODS, Method
from fcdd.neighbours import PatchFeatures, greedy_coreset, make_search

log = logging.getLogger("fcdd")

#: the paper's smoothing of the upsampled anomaly map (pixels at the input resolution)
DEFAULT_BLUR = 4.0


@METHODS.register("patchcore")
class PatchCore(Method):
    learns_by_gradient = False
    uses_anomalies = False

    def __init__(self, config, in_channels: int) -> None:
        super().__init__(config, in_channels)
        self.features = PatchFeatures(
            config.backbone, config.pretrained, in_channels=in_channels,
            layers=config.feature_layers or None, dim=config.patch_dim,
        )
        self.register_buffer("bank", torch.zeros(0, self.features.out_dim))
        self.coreset = config.coreset
        self.projection = config.coreset_projection
        self.seed = config.seed
        self.backend = config.knn_backend
        self.score_mode = config.patchcore_score
        self.neighbourhood = config.neighbourhood
        self.blur_std = DEFAULT_BLUR if config.blur_heatmaps is None else config.blur_heatmaps
        self._search = None
        self._search_key: tuple | None = None

    # --- the memory bank ----------------------------------------------------------------------
    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) [0, 1] images -> (B, h, w, D) patch features."""
        return self.features(images).permute(0, 2, 3, 1)

    def fit(self, train_images: torch.Tensor, batch_size: int, device) -> None:
        started = time.perf_counter()
        parts = []
        for start in range(0, len(train_images), batch_size):
            batch = to_float(train_images[start : start + batch_size]).to(device)
            parts.append(self.patch_features(batch).reshape(-1, self.features.out_dim).cpu())
        patches = torch.cat(parts)
        extracted = time.perf_counter()
        keep = greedy_coreset(patches, fraction=self.coreset, projection_dim=self.projection, seed=self.seed)
        self.bank = patches[keep].to(self.bank.device)
        self._search = None
        log.info(
            "patchcore: %d patch features from %d images in %.1f s, coreset of %d (%.3g) in %.1f s",
            len(patches), len(train_images), extracted - started, len(keep), self.coreset, time.perf_counter() - extracted,
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        stored = state_dict.get(prefix + "bank")
        if stored is not None and stored.shape != self.bank.shape:
            self.bank = torch.empty_like(stored, device=self.bank.device)
        self._search = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def search(self):
        """The nearest-neighbour index over the bank, rebuilt when the bank changes."""
        key = (self.bank.data_ptr(), tuple(self.bank.shape), self.bank.device)
        if self._search is None or self._search_key != key:
            if len(self.bank) == 0:
                raise RuntimeError("patchcore has no memory bank yet: fit it on nominal images first")
            self._search = make_search(self.bank, self.backend)
            self._search_key = key
        return self._search

    # --- scoring --------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.patch_features(images)
        b, h, w, d = features.shape
        queries = features.reshape(-1, d)
        distances, nearest = self.search().search(queries, k=1)
        distances = distances[:, 0].to(images.device).view(b, h * w)
        nearest = nearest[:, 0].view(b, h * w)
        worst = distances.argmax(1)
        top = distances.gather(1, worst[:, None])[:, 0]
        if self.score_mode == "max":
            scores = top
        else:
            scores = top * self.reweighting(queries.view(b, h * w, d)[torch.arange(b), worst], nearest[torch.arange(b), worst.cpu()])
        maps = F.interpolate(distances.view(b, 1, h, w), size=images.shape[-2:], mode="bilinear", align_corners=False)
        return scores, blur(maps, self.blur_std)

    def reweighting(self, query: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
        """The paper's weight ``1 - softmax(-)``: near 1 when the nearest bank feature lies in a
        sparse part of the bank (its own neighbours are far from the query), lower in dense parts."""
        k = min(self.neighbourhood, len(self.bank))
        if k < 2:
            return torch.ones(len(query), device=query.device)
        bank = self.bank
        _, around = self.search().search(bank[nearest.to(bank.device)], k=k)  # includes the nearest itself first
        neighbours = bank[around]  # (B, k, D)
        spread = (neighbours - query.to(bank.device)[:, None]).norm(dim=-1)  # distances query -> each neighbour
        return (1 - torch.softmax(spread, dim=1)[:, 0]).to(query.device)
