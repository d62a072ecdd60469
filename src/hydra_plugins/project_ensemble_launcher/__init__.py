"""Hydra launcher plugin ``hydra/launcher=ensemble`` (training-template): see
``project.ensemble.launch``."""
