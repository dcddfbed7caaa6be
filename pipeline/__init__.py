"""Sigmoid vs ReLU on CIFAR-10: a DVC pipeline whose stages are tracked in MLflow."""
