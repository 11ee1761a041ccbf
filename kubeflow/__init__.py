"""Kubeflow Pipelines runner and deployment files."""
