"""Datasets the plugin can build by itself, with no download: the runnable default's data."""

from solo_directpred.data.digits import DIGITS_MEAN, DIGITS_STD, prepare_digits

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "prepare_digits"]
