"""Datasets: image folders and splits (TF-free), the tf.data training pipeline (`edgeface.data.pipeline`,
imports TensorFlow), LFW pairs (`pairs`) and expression datasets (`expressions`).

Only the TF-free folder helpers are re-exported here so `import edgeface.data` stays light.
"""
from edgeface.data.folders import ImageFolder, scan_folder, split_by_identity, split_stratified

__all__ = ["ImageFolder", "scan_folder", "split_by_identity", "split_stratified"]
