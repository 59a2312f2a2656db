"""Data-set presets: the paper's image size, network, preprocessing and hyperparameters.

``fcdd train --preset mvtec --data ...`` starts from these values; a YAML file and flags given
beside it override them. Dataset roots always come from the user (``--data`` / ``--datadir``).
"""

from __future__ import annotations

from fcdd.registry import Registry

PRESETS: Registry[dict] = Registry("preset")

_MVTEC = dict(
    image_size=224, net="vgg11", pretrained="auto", objective="fcdd", supervise_mode="malformed_normal",
    noise_mode="confetti", anomaly_fraction=0.5, epochs=200, batch_size=16, optimizer="adam", lr=1e-3,
    weight_decay=1e-5, milestones=[100, 150], lr_gamma=0.1, augment_flip="hv", upsample="gaussian",
)
PRESETS.register("mvtec")(dict(_MVTEC, dataset="mvtec"))
PRESETS.register("btad")(dict(_MVTEC, dataset="btad"))
PRESETS.register("custom")(dict(_MVTEC, dataset="custom"))
_SMALL = dict(objective="fcdd", supervise_mode="noise", anomaly_fraction=0.5, optimizer="sgd", momentum=0.9, pretrained="none",
              augment_flip="h", augment_shift=0.0625, augment_jitter=0.05, upsample="gaussian")
PRESETS.register("fmnist")(dict(_SMALL, dataset="fmnist", image_size=28, net="cnn28", noise_mode="cifar100", epochs=400,
                                batch_size=128, lr=1e-2, weight_decay=1e-6, milestones=[300]))
PRESETS.register("fmnist_corrupted")(dict(_SMALL, dataset="fmnist_corrupted", image_size=28, net="cnn28", supervise_mode="malformed_normal",
                                          noise_mode="confetti", epochs=400, batch_size=128, lr=1e-2, weight_decay=1e-6, milestones=[300]))
PRESETS.register("cifar10")(dict(_SMALL, dataset="cifar10", image_size=32, net="cnn32", noise_mode="cifar100", epochs=600,
                                 batch_size=20, optimizer="adam", lr=1e-3, weight_decay=1e-6, milestones=[400, 500]))
PRESETS.register("imagenet")(dict(_MVTEC, dataset="imagenet", supervise_mode="noise", noise_mode="imagenet22k", epochs=600,
                                  batch_size=20, lr=1e-3, weight_decay=1e-6, milestones=[400, 500], augment_flip="h"))
PRESETS.register("voc")(dict(_MVTEC, dataset="voc", supervise_mode="noise", noise_mode="imagenet22k", epochs=600,
                             batch_size=20, lr=1e-3, weight_decay=1e-6, milestones=[400, 500], augment_flip="h"))
