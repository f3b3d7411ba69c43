"""Adapters between `DeepfakeScorer` and other tools: `datasets`, FiftyOne, Ray Data."""
