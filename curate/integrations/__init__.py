"""Thin adapters between `DeepfakeScorer` and other tools (datasets, FiftyOne, Ray)."""
