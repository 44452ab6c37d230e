"""Training: `edgeface train face` (embedder) and `edgeface train expression` (classifier)."""
