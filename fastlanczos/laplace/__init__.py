"""Posteriors for users: the Laplace posterior of a trained model (posterior.py), Gaussian and
the paper's parameter samples (sampling.py), and scores of predictions (metrics.py)."""

from .metrics import classification_scores, reliability_bins
from .posterior import LaplacePosterior
from .predictive import RegressionPredictive
from .sampling import gaussian_sample, sample_parameters, with_prior

__all__ = ["LaplacePosterior", "RegressionPredictive", "classification_scores",
           "gaussian_sample", "reliability_bins", "sample_parameters", "with_prior"]
