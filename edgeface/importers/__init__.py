"""Pretrained embedders from other formats as flat tf-keras models (edgeface import)."""
