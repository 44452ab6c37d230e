"""`edgeface`: one CLI grammar for every stage.

    edgeface align SRC DST            detect + 5-point align a folder of images
    edgeface train face|expression    train an embedder / an expression classifier
    edgeface import SRC --out RUN     a pretrained embedder (ncnn) -> a verified Keras run
    edgeface convert MODEL            float32 / float16 / int8 .tflite (+ C array) with model cards
    edgeface bench MODEL.tflite...    size, latency, LFW verification / expression accuracy
    edgeface verify A B               same person? (TF-free runtime)
    edgeface enroll / identify        a gallery of people (TF-free runtime)
    edgeface expression IMG|--video   facial expressions, live (TF-free runtime)
    edgeface info MODEL.tflite        print a model card
    edgeface data list|get|pairs|...  the registered public face sets, pairs files, data hygiene

Subcommands live in their stage's package and are imported only when called, so `--help` is
instant and the runtime commands never import TensorFlow.
Exit codes: 0 ok, 1 a check failed (budget, regression), 2 bad usage or bad input.
"""
from __future__ import annotations

import sys

import click

import edgeface
from edgeface.errors import EdgefaceError, first_line
from edgeface.utils.lazy_group import LazyGroup

# name -> (module, attribute, one-line help shown by `edgeface --help` without importing the module)
COMMANDS = {
    "align": ("edgeface.align.cli", "align", "Detect faces and align them onto the 5-point template."),
    "train": ("edgeface.train.cli", "train", "Train a face embedder or an expression classifier."),
    "import": ("edgeface.importers.cli", "import_model", "Import a pretrained embedder (ncnn) as a verified Keras run."),
    "convert": ("edgeface.convert.cli", "convert", "Convert a Keras model to float32/float16/int8 TFLite."),
    "bench": ("edgeface.bench.cli", "bench", "Benchmark .tflite models: size, latency, accuracy."),
    "verify": ("edgeface.runtime.cli", "verify", "Are two face images the same person? (no TensorFlow)"),
    "enroll": ("edgeface.runtime.cli", "enroll", "Add a person's face images to a gallery. (no TensorFlow)"),
    "identify": ("edgeface.runtime.cli", "identify", "Name the faces in an image, video or camera. (no TensorFlow)"),
    "expression": ("edgeface.runtime.cli", "expression",
                   "Facial expression of every face in images, a video or a camera. (no TensorFlow)"),
    "info": ("edgeface.convert.cli", "info", "Print the model card of a .tflite artifact."),
    "models": ("edgeface.runtime.cli", "models", "List the shipped models (task, size, input, accuracy). (no TensorFlow)"),
    # the data group with lfw-overlap added: that command runs a teacher, a stage above data
    "data": ("edgeface.teachers.cli", "data", "Public face sets, pairs files, de-duplication, views and morphs."),
    "teacher": ("edgeface.teachers.cli", "teacher", "Precompute a teacher's embeddings for distillation."),
}


@click.group(cls=LazyGroup, commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgeface.__version__, prog_name="edgeface")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """edgeface: face images to a verified, sub-1 MB face model for phones, Raspberry Pi and MCUs."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """(argv without --debug, whether it was given): --debug is accepted anywhere before `--`."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return (["--debug", *rest] if debug else rest), debug


def main(argv=None) -> int:
    argv, debug = split_debug(list(argv if argv is not None else sys.argv[1:]))
    if not debug:
        from edgeface.utils.native import quiet_tensorflow_import

        quiet_tensorflow_import()
    try:
        code = cli.main(args=argv, prog_name="edgeface", standalone_mode=False)
        # Without standalone mode click returns a command's click.exceptions.Exit code (verify --exit-code).
        return code if type(code) is int else 0
    except EdgefaceError as e:
        if debug:
            raise
        click.echo(f"edgeface: error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # bad usage: click's own message, one line, exit 2 (even with --debug)
        click.echo(f"edgeface: error: {e.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("edgeface: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("edgeface: interrupted", err=True)
        return 130
    except Exception as e:  # an unexpected failure: still one line unless --debug
        if debug:
            raise
        click.echo(f"edgeface: error: {type(e).__name__}: {first_line(e)} (rerun with --debug for the traceback)", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
