"""`edgeface train expression`: transfer-learn (or train from scratch) a facial-expression classifier."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgeface.errors import EdgefaceError
from edgeface.train.config import CONFIG_DIR
from edgeface.train.distribute import STRATEGIES
from edgeface.train.expression.config import BACKBONES  # TF-free: the choices for --help

SHIPPED_EXPRESSION_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("expression_*.toml"))

DTYPES = ("float32", "float16", "int8")


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="Dataset folder: <class>/* (CK+, JAFFE) or train/ + test/ (FER2013).")
@click.option("--backbone", type=click.Choice(BACKBONES), default=None, help="Base network (default: cnn).")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), help="New run directory.")
@click.option("--weights", default=None,
              help="imagenet (needs internet) | FILE: an .h5 of base weights, or a face model .keras / RUN_DIR "
                   "(transfer from edgeface's face backbone) | none (from scratch).")
@click.option("--input-size", type=int, default=None, help="Input side in pixels (default per backbone, 48-96).")
@click.option("--epochs", type=int, default=None, help="Head epochs (frozen base) or end-to-end epochs.")
@click.option("--max-steps", type=int, default=None, help="Cap optimizer steps per stage (smoke runs).")
@click.option("--fine-tune-blocks", type=int, default=None, help="Then unfreeze the top K base blocks.")
@click.option("--fine-tune-epochs", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--fine-tune-lr", type=float, default=None, help="Lower learning rate for fine-tuning.")
@click.option("--batch-size", type=int, default=None)
@click.option("--clahe/--no-clahe", default=None, help="CLAHE contrast equalisation (default on).")
@click.option("--split-by", type=click.Choice(["stratified", "subject"]), default=None,
              help="Split of a single-folder dataset (default: stratified for CK+, by subject for JAFFE).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML config file, or a shipped one by name: " + ", ".join(SHIPPED_EXPRESSION_CONFIGS) + ".")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set lr=0.002 --set filters=[[16],[32]] (repeatable).")
@click.option("--seed", type=int, default=None)
@click.option("--convert", "dtypes", default="", help="After training, write RUN_DIR/tflite/*.tflite for these "
              "dtypes (comma list of float32,float16,int8) with model cards.")
@click.option("--time-limit-min", type=float, default=None,
              help="Stop training after this many minutes (the best epoch by val accuracy is kept).")
@click.option("--prune-head", is_flag=True, help="Also prune the head's hidden units by distinctiveness "
              "(merge < 15 deg, remove > 165 deg) and record accuracy before/after.")
@click.option("--resume", is_flag=True, help="Continue RUN_DIR from its last checkpoint (its config.toml is the base).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help="tf.distribute: default (one device), mirrored (this machine's GPUs), multiworker (hosts in "
                   "TF_CONFIG); --batch-size is the global batch [docs/distributed.md].")
@click.option("--print-config", is_flag=True, help="Print the resolved config as TOML (what --config reads) and exit.")
def expression(data_dir, backbone, run_dir, weights, input_size, epochs, max_steps, fine_tune_blocks, fine_tune_epochs,
               lr, fine_tune_lr, batch_size, clahe, split_by, config_path, sets, seed, dtypes, time_limit_min,
               prune_head, resume, strategy, print_config):
    """Train a facial-expression classifier (frozen base + new head, optional fine-tuning)."""
    from edgeface.train.expression.config import load_config, to_toml

    dtype_list = [d.strip() for d in dtypes.split(",") if d.strip()]
    bad = [d for d in dtype_list if d not in DTYPES]
    if bad:
        raise EdgefaceError(f"unknown dtype(s) {', '.join(bad)} for --convert; choose from {', '.join(DTYPES)}")
    if resume and run_dir is None:
        raise click.UsageError("Missing option '--out' (the run to resume).")
    cfg = load_config(config_path, {
        "backbone": backbone, "weights": weights, "input_size": input_size, "epochs": epochs, "max_steps": max_steps,
        "fine_tune_blocks": fine_tune_blocks, "fine_tune_epochs": fine_tune_epochs, "lr": lr,
        "fine_tune_lr": fine_tune_lr, "batch_size": batch_size, "clahe": clahe, "split_by": split_by, "seed": seed,
        "time_limit_min": time_limit_min, "strategy": strategy}, sets, resume_from=run_dir if resume else None)
    if print_config:
        click.echo(to_toml(cfg).rstrip())
        return
    from edgeface.train.cli import require_options
    from edgeface.train.expression.task import train_expression

    require_options(data_dir, run_dir)
    info = train_expression(data_dir, run_dir, cfg, resume=resume)
    click.echo(f"{run_dir}: best val accuracy {info['best_val_accuracy']:.4f} ({info['best']['stage']} stage), "
               f"float test accuracy {info['test_accuracy_float_keras']}, {info['wall_time_s']} s")
    if prune_head:
        from edgeface.train.expression.prune_head import prune_run_head
        report = prune_run_head(run_dir)
        click.echo("prune: " + json.dumps({k: report[k] for k in ("units_before", "units_after", "val_accuracy_before",
                                                                    "val_accuracy_after")}))
    if dtype_list:
        from edgeface.train.expression.export import convert_run
        for d in [run_dir] + ([run_dir / "pruned"] if prune_head else []):
            for card in convert_run(d, dtype_list):
                click.echo(f"wrote {d / 'tflite' / card['file']} ({card['bytes']} bytes, {card['dtype']})")
