"""Data-set presets: the paper's image size, network, preprocessing and hyperparameters.

``fcdd train --preset mvtec --data ...`` starts from these values; a YAML file and flags given
beside it override them. Dataset roots always come from the user (``--data`` / ``--datadir``).
"""

from __future__ import annotations

from fcdd.registry import Registry

PRESETS: Registry[dict] = Registry("preset")

# The FCDD paper's MVTec-AD recipe (Liznerski et al., ICLR 2021), as its code runs it
# (``DefaultMvtecConfig`` and ``ADMvTec`` with ``preproc='lcnaug1'`` in github.com/liznerski/fcdd):
# VGG11-BN with ImageNet weights, its first four convolutions frozen (batch norms still following
# the data), images decoded at 240 px, each training image a random 224 crop or a resize, weak
# colour jitter, Gaussian noise of 0.1 x the image's std on half the images, LCN then min-max
# scaling inside the net, confetti noise on half of every batch, 200 epochs over the training set
# repeated 10 times, batches of 16 accumulated over 8 (128 a step), SGD with Nesterov momentum
# 0.9, lr 1e-3 x 0.985 per epoch, weight decay 1e-4, heatmaps by a Gaussian of std 12, the image
# score the mean of the output map, pixel AUROC at each mask's own resolution. README.md lists
# what is left different (presets section).
MVTEC_PAPER = dict(
    image_size=224, load_size=240, net="vgg11", pretrained="auto", frozen_bn="adapt", preprocessing="lcn_minmax",
    objective="fcdd", supervise_mode="malformed_normal", noise_mode="confetti", anomaly_fraction=0.5,
    epochs=200, epoch_repeats=10, batch_size=16, accumulate=8,
    optimizer="sgd", momentum=0.9, lr=1e-3, weight_decay=1e-4, lr_decay=0.985, milestones=[],
    augment_flip="none", augment_shift=0.0, augment_jitter=0.04,
    augment_noise=0.1, augment_noise_relative=True, augment_noise_p=0.5,
    upsample="gaussian", gauss_std=12.0, image_score="mean", eval_resolution="native",
)
PRESETS.register("mvtec")(dict(MVTEC_PAPER, dataset="mvtec"))
# BTAD is not in the paper; its MVTec-style inspection images get the MVTec recipe. So do custom
# folders (the paper's custom runner keeps its generic defaults instead; README.md says which).
PRESETS.register("btad")(dict(MVTEC_PAPER, dataset="btad"))
PRESETS.register("custom")(dict(MVTEC_PAPER, dataset="custom"))
_SMALL = dict(objective="fcdd", supervise_mode="noise", anomaly_fraction=0.5, optimizer="sgd", momentum=0.9, pretrained="none",
              augment_flip="h", augment_shift=0.0625, augment_jitter=0.05, upsample="gaussian")
# Fashion-MNIST as the paper's DefaultFmnistConfig with 'lcnaug1': SGD lr 1e-2 x 0.98 per epoch,
# LCN + min-max, random crops of 2 px padding and horizontal flips, no jitter, Gaussian std 1.2
PRESETS.register("fmnist")(dict(_SMALL, dataset="fmnist", image_size=28, net="cnn28", noise_mode="cifar100", epochs=400,
                                batch_size=128, lr=1e-2, weight_decay=1e-6, lr_decay=0.98, preprocessing="lcn_minmax",
                                augment_shift=2 / 28, augment_jitter=0.0, gauss_std=1.2))
PRESETS.register("fmnist_corrupted")(dict(_SMALL, dataset="fmnist_corrupted", image_size=28, net="cnn28", supervise_mode="malformed_normal",
                                          noise_mode="confetti", epochs=400, batch_size=128, lr=1e-2, weight_decay=1e-6, milestones=[300]))
# CIFAR-10 as DefaultCifar10Config with 'aug1': 20 x 10 images a step, crops of 4 px padding,
# jitter 0.01, noise 0.001, Gaussian std 1.2
PRESETS.register("cifar10")(dict(_SMALL, dataset="cifar10", image_size=32, net="cnn32", noise_mode="cifar100", epochs=600,
                                 batch_size=20, accumulate=10, optimizer="adam", lr=1e-3, weight_decay=1e-6, milestones=[400, 500],
                                 augment_shift=0.125, augment_jitter=0.01, augment_noise=0.001, gauss_std=1.2))
# ImageNet-30 and Pascal VOC as DefaultImagenetConfig / DefaultPascalvocConfig: VGG11-BN without
# pretraining, Adam, 20 x 10 images a step, 600 epochs (x0.1 at 400 and 500), Gaussian std 8;
# ImageNet-22k outliers for ImageNet, ImageNet-1k ones for VOC
_IMAGENET = dict(image_size=224, net="vgg11", pretrained="none", objective="fcdd", supervise_mode="noise", anomaly_fraction=0.5,
                 epochs=600, batch_size=20, accumulate=10, optimizer="adam", lr=1e-3, weight_decay=1e-6, milestones=[400, 500],
                 lr_gamma=0.1, augment_jitter=0.01, augment_noise=0.001, upsample="gaussian", gauss_std=8.0)
PRESETS.register("imagenet")(dict(_IMAGENET, dataset="imagenet", noise_mode="imagenet22k", augment_flip="h"))
PRESETS.register("voc")(dict(_IMAGENET, dataset="voc", noise_mode="imagenet", augment_flip="none", augment_shift=0.0))
