"""Synthetic data for trying every command offline: SMPL-format body models, regressors and a miniature data tree."""
