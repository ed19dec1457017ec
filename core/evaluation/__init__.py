"""Evaluation of trained models: curves, confidence intervals, calibration and model comparison.

:mod:`core.evaluation.metrics` holds the numbers of the Model performance page as plain functions of
NumPy arrays (labels, scores, probabilities, logits); nothing here loads a model.
"""
