"""`edgeface train face`: train a face embedder (softmax/center/ArcFace/CosFace, distillation)."""
from __future__ import annotations

from pathlib import Path

import click

from edgeface.train.config import CONFIG_DIR

# The names `--config` accepts, read from the shipped folder so the help never drifts from it.
SHIPPED_FACE_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("face_*.toml"))


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="Aligned face folder <identity>/<image>.png (from `edgeface align`).")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), help="Run directory.")
@click.option("--config", "config_file", default=None,
              help="TOML config file, or a shipped one by name: " + ", ".join(SHIPPED_FACE_CONFIGS) + ".")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any config field, e.g. --set optim.lr=0.05 --set model.alpha=0.75 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue RUN_DIR from its last checkpoint (its config.toml is the base).")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimizer steps in total (train.max_steps).")
@click.option("--epochs", type=int, default=None, help="train.epochs")
@click.option("--seed", type=int, default=None, help="train.seed (split, init, shuffling, augmentation).")
@click.option("--model", "model_name", default=None, help="model.name, e.g. mobilenetv2_face, mobilenetv2_micro.")
@click.option("--loss", type=click.Choice(["softmax", "center", "arcface", "cosface"]), default=None, help="loss.name")
@click.option("--batch-size", type=int, default=None, help="data.batch_size")
@click.option("--lr", type=float, default=None, help="optim.lr")
@click.option("--teacher", default=None, help="Distil from this teacher (a folder such as "
              "../shared/teachers/mobilefacenet-ncnn, a .tflite or a .keras embedder): train.teacher.")
@click.option("--distill-weight", type=float, default=None, help="loss.distill_weight")
@click.option("--prune", type=float, default=None, metavar="SPARSITY",
              help="After training, magnitude-prune the best model to this sparsity (train.prune).")
@click.option("--qat/--no-qat", default=None, help="After training, quantisation-aware fine-tune (train.qat).")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default=None,
              help="tf.distribute: default (one device), mirrored (this machine's GPUs), multiworker (hosts in "
                   "TF_CONFIG); --batch-size is the global batch [train.strategy, docs/distributed.md].")
@click.option("--use-fallbacks", is_flag=True,
              help="Also train on align's centre-crop fallbacks (no detected face) [data.use_fallbacks].")
@click.option("--print-config", is_flag=True, help="Print the resolved config as TOML (what --config reads) and exit.")
def face(data_dir, run_dir, config_file, sets, resume, max_steps, epochs, seed, model_name, loss, batch_size, lr,
         teacher, distill_weight, prune, qat, strategy, use_fallbacks, print_config):
    """Train a face embedder on an aligned folder; writes RUN_DIR/{model.keras, run.json, log.csv, tb/, checkpoints/}."""
    from edgeface.train.face import resolve_config, train_face

    flags = {"train.max_steps": max_steps, "train.epochs": epochs, "train.seed": seed, "model.name": model_name,
             "loss.name": loss, "data.batch_size": batch_size, "optim.lr": lr, "train.teacher": teacher,
             "loss.distill_weight": distill_weight, "train.prune": prune, "train.qat": qat,
             "train.strategy": strategy,
             "data.use_fallbacks": True if use_fallbacks else None}
    if resume and run_dir is None:
        raise click.UsageError("Missing option '--out' (the run to resume).")
    cfg = resolve_config(run_dir, config_file, sets, flags, resume=resume)
    if print_config:
        from edgeface.train.config import to_toml

        click.echo(to_toml(cfg).rstrip())
        return
    from edgeface.train.cli import require_options

    require_options(data_dir, run_dir)
    info = train_face(data_dir, run_dir, cfg, resume=resume)
    best = info["best"]
    name = (best["metric"] or "").replace("_", " ")  # e.g. "val both teacher cosine"
    metric = f"best {name} {best['value']:.4f} (epoch {best['epoch']})" if best["value"] is not None \
        else "no validation split"
    click.echo(f"{run_dir}: {info['steps']} steps, {info['epochs_done']} epochs ({info['stop_reason']}), {metric}, "
               f"{info['wall_time_s']} s -> {run_dir / 'model.keras'}")
