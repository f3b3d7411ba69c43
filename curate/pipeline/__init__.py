"""From image inputs to model-ready batches: decode, resize and normalise, batch."""
