"""Facial-expression classification: a task of the training driver (edgeface.train.loop).

    config       ExpressionConfig, its flat schema and load_config (edgeface.train.config's loader)
    task         ExpressionTask, train_expression, load_run, predict_images
    export       convert_run: a run -> TFLite files with model cards
    prune_head   prune_run_head: the head's hidden units pruned by distinctiveness

TF-free to import (the CLI reads BACKBONES and the config before TensorFlow loads).
"""
from edgeface.train.expression.config import BACKBONES, ExpressionConfig, load_config
from edgeface.train.expression.export import convert_run
from edgeface.train.expression.prune_head import prune_run_head
from edgeface.train.expression.task import load_run, predict_images, train_expression

__all__ = ["BACKBONES", "ExpressionConfig", "load_config", "convert_run", "prune_run_head", "load_run",
           "predict_images", "train_expression"]
