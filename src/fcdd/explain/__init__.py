"""Heatmaps: receptive-field upsampling of output maps, blurring, gradient maps."""

from fcdd.explain.upsample import BilinearUpsample, GaussianUpsample, blur, gaussian_kernel, make_upsampler

__all__ = ["GaussianUpsample", "BilinearUpsample", "blur", "gaussian_kernel", "make_upsampler"]
