"""Formats other tools read and write: MLflow model directories.

This layer knows file formats, not mlcycle's registry: it takes an estimator with
its feature schema, library versions and code, and gives back plain results, so
that `api` (export, release), the training runs' tracking and anything else can
use it. MLflow is an optional extra (`[mlflow]`); reading an MLflow model
directory needs only PyYAML.
"""
