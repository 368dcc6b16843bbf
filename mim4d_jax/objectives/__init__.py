"""Pre-training objectives: losses computed from a model and a batch."""
