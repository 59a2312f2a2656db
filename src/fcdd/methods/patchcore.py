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

from fcdd.data.shape import Size
from fcdd.data.transforms import blur, to_float
from fcdd.methods.base import METHODS, Method
from fcdd.neighbours import PatchFeatures, greedy_coreset, make_search
from fcdd.runtime import progress_bar

log = logging.getLogger("fcdd")

#: the paper's smoothing of the upsampled anomaly map (pixels at the input resolution)
DEFAULT_BLUR = 4.0


@METHODS.register("patchcore")
class PatchCore(Method):
    learns_by_gradient = False
    uses_anomalies = False
    #: coreset picks between two saves of an interrupted fit's progress
    save_every = 2000

    def __init__(self, config, in_channels: int, image_shape: Size | None = None) -> None:
        super().__init__(config, in_channels, image_shape)
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

    def describe(self) -> str:
        f = self.features
        return f"backbone {f.backbone} (blocks {', '.join(map(str, f.layers))}, {f.out_dim} channels), coreset {self.coreset:g}"

    # --- the memory bank ----------------------------------------------------------------------
    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) [0, 1] images -> (B, h, w, D) patch features."""
        return self.features(images).permute(0, 2, 3, 1)

    def fit(self, train_images: torch.Tensor, batch_size: int, device, state: dict | None = None, save=None) -> None:
        started = time.perf_counter()
        parts = []
        for start in progress_bar(range(0, len(train_images), batch_size), desc="patch features", unit="batch", leave=False):
            batch = to_float(train_images[start : start + batch_size]).to(device)
            parts.append(self.patch_features(batch).reshape(-1, self.features.out_dim).cpu())
        patches = torch.cat(parts)
        extracted = time.perf_counter()
        # the features come out the same every time, so a resumed fit extracts them again and
        # continues the (much longer) coreset selection from its saved picks
        keep = greedy_coreset(patches, fraction=self.coreset, projection_dim=self.projection, seed=self.seed, state=state, save=save,
                              save_every=self.save_every)
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
    @staticmethod
    def _capturing() -> bool:
        """Whether an exporter is recording the graph (then the search must be plain tensor ops)."""
        return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()

    def nearest(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance to and index of each query's nearest bank feature."""
        if self._capturing():
            return graph_nearest(queries, self.bank)
        distances, index = self.search().search(queries, k=1)
        return distances[:, 0].to(queries.device), index[:, 0].to(queries.device)

    def bank_neighbours(self, rows: torch.Tensor, k: int) -> torch.Tensor:
        """Indices of the ``k`` bank features nearest to bank rows ``rows`` (themselves first)."""
        if self._capturing():
            return torch.topk(squared_distances(self.bank[rows], self.bank), k, dim=1, largest=False).indices
        return self.search().search(self.bank[rows.to(self.bank.device)], k=k)[1].to(rows.device)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.patch_features(images)
        b, h, w, d = features.shape
        queries = features.reshape(-1, d)
        distances, nearest = self.nearest(queries)
        distances, nearest = distances.view(b, h * w), nearest.view(b, h * w)
        worst = distances.argmax(1, keepdim=True)
        top = distances.gather(1, worst)[:, 0]
        if self.score_mode == "max":
            scores = top
        else:
            query = features.reshape(b, h * w, d).gather(1, worst[:, :, None].expand(-1, 1, d))[:, 0]
            scores = top * self.reweighting(query, nearest.gather(1, worst)[:, 0])
        maps = F.interpolate(distances.view(b, 1, h, w), size=images.shape[-2:], mode="bilinear", align_corners=False)
        return scores, blur(maps, self.blur_std)

    def reweighting(self, query: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
        """The paper's weight ``1 - softmax(.)[nearest]`` over the query's distances to the nearest
        bank feature's own neighbourhood: near 1 when that feature lies in a sparse part of the
        bank (its neighbours are far from the query), lower in dense parts."""
        k = min(self.neighbourhood, len(self.bank))
        if k < 2:
            return torch.ones(len(query), device=query.device)
        around = self.bank_neighbours(nearest, k)  # (B, k), the nearest feature itself first
        spread = (self.bank[around] - query[:, None]).norm(dim=-1)
        return 1 - torch.softmax(spread, dim=1)[:, 0]


def squared_distances(points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(P, R) squared distances as ``||p||^2 - 2 p.r + ||r||^2``, one matrix product (graph-friendly)."""
    return points.square().sum(1, keepdim=True) - 2 * points @ rows.T + rows.square().sum(1)[None]


def graph_nearest(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest bank row per query with tensor operations only (for traced / ONNX graphs): the
    loop runs over the bank's fixed chunks, so the number of queries stays a dynamic axis.
    Distances are recomputed exactly from the chosen rows, as ``TorchSearch`` does."""
    best, best_index = None, None
    for start in range(0, bank.shape[0], chunk):
        value, index = squared_distances(queries, bank[start : start + chunk]).min(1)
        index = index + start
        if best is None:
            best, best_index = value, index
        else:
            better = value < best
            best, best_index = torch.where(better, value, best), torch.where(better, index, best_index)
    exact = (queries - bank[best_index]).square().sum(1).sqrt()
    return exact, best_index
