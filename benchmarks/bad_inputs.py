"""Run the hostile-input matrix of issue 16 against the real CLI and write benchmarks/bad_inputs.md.

    python benchmarks/bad_inputs.py [--out benchmarks/bad_inputs.md] [--only SUBSTRING] [--no-tf]

Each case runs `python -m edgeface ...` in a subprocess, in a fresh folder, on real files (LFW
photos, the shipped int8 model, damaged copies of both; see tests/bad_files.py) and records the
exit code, the stderr lines, and what changed on disk. Counted as defects:
  traceback       "Traceback" on stderr
  wrong exit      exit code other than the expected one (0 ok, 1 check failed, 2 bad input)
  data loss       a file the case marks as precious changed or vanished
  leftover        temp (.*.tmp), lock (*.lock) files, or a folder the failed command created, left behind
--no-tf skips the cases that load TensorFlow (align, train and convert runs that get that far).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bad_files import (BAD_CARDS, OTHER, PERSON, SHIPPED, appended_jpeg, changed_files, cli_env,  # noqa: E402
                       copy_model, damaged_model, exif_rotated_jpeg, huge_png, lfw_photo, nan_gallery, run_cli,
                       snapshot, truncated, zeroed_jpeg)
from edgeface.utils.paths import shared_data  # noqa: E402

LEFTOVER_PATTERNS = (".*.tmp", "*.lock", ".*.lock")


@dataclass
class Case:
    name: str
    stage: str
    args: list                      # CLI arguments; "{in}" is the shared inputs folder, paths are relative to the case folder
    expect: int                     # expected exit code
    setup: Callable[[Path], None] | None = None
    precious: list[str] = field(default_factory=list)   # case-folder files that must stay byte-identical
    no_new: list[str] = field(default_factory=list)     # paths a failing command must not leave behind
    check: Callable[[Path], str | None] | None = None   # extra verdict: a problem sentence or None
    tf: bool = False                # loads TensorFlow (slow)
    env: dict = field(default_factory=dict)
    timeout: float = 300
    runner: Callable | None = None  # runner(case folder, env) -> (exit code, problem or "", stderr): signals
    shown: str = ""                 # the command line shown for a runner case


# ---- the shared inputs -----------------------------------------------------------------------
def make_inputs(d: Path, lfw: Path) -> None:
    import cv2

    copy_model(d, "face.tflite")
    a, a2, b = lfw_photo(lfw, PERSON, 1), lfw_photo(lfw, PERSON, 2), lfw_photo(lfw, OTHER, 1)
    for name, src in (("a.jpg", a), ("a2.jpg", a2), ("b.jpg", b)):
        shutil.copy(src, d / name)
    exif_rotated_jpeg(a, d / "exif.jpg")
    appended_jpeg(a, d / "appended.jpg")
    zeroed_jpeg(a, d / "zeroed.jpg")
    truncated(a, d / "truncated.jpg")
    truncated(a, d / "truncated90.jpg", 0.9)
    huge_png(d / "huge.png")
    huge_png(d / "huge50k.png", 50000)
    (d / "empty.png").write_bytes(b"")
    (d / "text.jpg").write_text("not an image\n")
    bgr = cv2.imread(str(a))
    cv2.imwrite(str(d / "a.png"), bgr)
    cv2.imwrite(str(d / "a.bmp"), bgr)
    cv2.imwrite(str(d / "a.webp"), bgr)
    cv2.imwrite(str(d / "a.tif"), bgr)
    cv2.imwrite(str(d / "gray.jpg"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "a16.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(d / "grey.png"), np.full((250, 250, 3), 128, np.uint8))
    cv2.imwrite(str(d / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    png = (d / "a.png").read_bytes()
    (d / "truncated.png").write_bytes(png[:len(png) // 2])
    (d / "folder.jpg").mkdir()
    for how in ("half", "4k", "bitflip", "empty", "text"):
        damaged_model(d / f"{how}.tflite", how)
    for name, card, _ in BAD_CARDS:
        copy_model(d, f"card_{name}.tflite", card=card)
    nan_gallery(d / "nan.npz", d / "face.tflite")
    (d / "notzip.npz").write_text("not a gallery")
    (d / "pairs1.txt").write_text(f"1 1\n{PERSON} 1 2\n{PERSON} 1 {OTHER} 1\n")
    (d / "pairs_bad.txt").write_text("10 300\nthis is not a pairs line\n")
    (d / "garbage.keras").write_text("not a keras file")
    (d / "bad.toml").write_text("[train\nlog_every = ")
    # a small training tree of real faces (unaligned LFW photos: enough for the checks before TF)
    for who in (PERSON, OTHER, "Tony_Blair"):
        (d / "data" / who).mkdir(parents=True)
        for k in (1, 2, 3):
            shutil.copy(lfw_photo(lfw, who, k), d / "data" / who)
    shutil.copy(SHIPPED.parents[1] / "benchmarks" / "baseline.json", d / "baseline.json")


# ---- case helpers ----------------------------------------------------------------------------
def enrolled(name="colin", photo="a.jpg", gallery="g.npz"):
    def setup(c: Path):
        out = run_cli(["enroll", name, c / "in" / photo, "--model", c / "in" / "face.tflite", "--gallery", c / gallery],
                      cwd=c)
        assert out.rc == 0, out.stderr
    return setup


def copy_in(*names):
    def setup(c: Path):
        for n in names:
            src = c / "in" / n
            (shutil.copytree if src.is_dir() else shutil.copy)(src, c / Path(n).name)
    return setup


def chain(*setups):
    def setup(c: Path):
        for s in setups:
            s(c)
    return setup


def train_tree(mutate: Callable[[Path], None] | None = None):
    def setup(c: Path):
        shutil.copytree(c / "in" / "data", c / "data")
        if mutate:
            mutate(c / "data")
    return setup


def gallery_names(expect: list[str], gallery="g.npz"):
    def check(c: Path):
        from edgeface.runtime.gallery import Gallery

        names = Gallery.load(os.path.realpath(c / gallery)).names
        return None if names == expect else f"gallery holds {names}, expected {expect}"
    return check


def M(c="in/face.tflite"):
    return ["--model", c]


# ---- the matrix ------------------------------------------------------------------------------
def build_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # verify: one photo of every kind against a good one
    photos = {"a.jpg": 0, "exif.jpg": 0, "appended.jpg": 0, "a.png": 0, "a.bmp": 0, "a.webp": 0, "a.tif": 0,
              "gray.jpg": 0, "a16.png": 0, "rgba.png": 0, "zeroed.jpg": 2, "truncated.jpg": 2, "truncated90.jpg": 2,
              "truncated.png": 2, "huge.png": 2, "huge50k.png": 2, "empty.png": 2, "text.jpg": 2, "missing.jpg": 2,
              "folder.jpg": 2, "grey.png": 2, "tiny.png": 2}
    for photo, rc in photos.items():
        add(Case(f"verify photo {photo}", "verify", ["verify", f"in/{photo}", "in/a2.jpg", *M()], rc))
    add(Case("verify zeroed.jpg --allow-corrupt", "verify", ["verify", "in/zeroed.jpg", "in/a2.jpg", *M(), "--allow-corrupt"], 0))
    add(Case("verify grey.png --fallback-crop", "verify", ["verify", "in/grey.png", "in/a2.jpg", *M(), "--fallback-crop"], 0))
    add(Case("verify a.jpg --max-pixels 1000", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *M(), "--max-pixels", "1000"], 2))
    add(Case("verify EDGEFACE_MAX_PIXELS=abc", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *M()], 2,
             env={"EDGEFACE_MAX_PIXELS": "abc"}))
    for thr in ("nan", "inf", "abc", "-inf"):
        add(Case(f"verify --threshold {thr}", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *M(), "--threshold", thr], 2))
    for opt in (["--threads", "0"], ["--threads", "x"], ["--bogus"], ["--model"]):
        add(Case(f"verify {' '.join(opt)}", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *opt], 2))
    add(Case("verify --debug after the subcommand", "verify", ["verify", "in/a.jpg", "--debug", "--bogus"], 2))
    add(Case("verify one image only", "verify", ["verify", "in/a.jpg", *M()], 2))
    add(Case("verify model missing", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *M("in/nope.tflite")], 2))
    add(Case("verify model is a folder", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *M("in/data")], 2))
    add(Case("verify model is a photo", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *M("in/a.jpg")], 2))
    add(Case("verify model card without threshold", "verify", ["verify", "in/a.jpg", "in/a2.jpg", *M("m.tflite")], 2,
             setup=lambda c: copy_model(c, "m.tflite", card=None)))

    # every damaged model and every bad card, through every runtime command
    def runtime_args(cmd: str, model: str) -> list:
        return {"verify": ["verify", "in/a.jpg", "in/b.jpg", *M(model)],
                "enroll": ["enroll", "colin", "in/a.jpg", *M(model), "--gallery", "g.npz"],
                "identify": ["identify", "in/a.jpg", *M(model), "--gallery", "in/nan.npz"],
                "info": ["info", model]}[cmd]
    for cmd in ("verify", "enroll", "identify", "info"):
        for how in ("half", "4k", "bitflip", "empty", "text"):
            add(Case(f"{cmd} model {how}", cmd, runtime_args(cmd, f"in/{how}.tflite"), 2, no_new=["g.npz"]))
        for name, _, _ in BAD_CARDS:
            add(Case(f"{cmd} card {name}", cmd, runtime_args(cmd, f"in/card_{name}.tflite"), 2, no_new=["g.npz"]))

    # enroll
    add(Case("enroll mixed good and bad images", "enroll",
             ["enroll", "colin", "in/a.jpg", "in/huge50k.png", "in/zeroed.jpg", "in/text.jpg", "in/a2.jpg", *M(),
              "--gallery", "g.npz"], 0, check=gallery_names(["colin"])))
    add(Case("enroll only bad images", "enroll", ["enroll", "colin", "in/huge.png", "in/empty.png", *M(),
                                                 "--gallery", "g.npz"], 2, no_new=["g.npz"]))
    add(Case("enroll --strict with a bad image", "enroll", ["enroll", "george", "in/b.jpg", "in/empty.png", *M(),
                                                           "--gallery", "g.npz", "--strict"], 2,
             setup=enrolled(), precious=["g.npz"]))
    for label, name in (("control chars", "x\x1b[2Ky"), ("100k chars", "a" * 100_000), ("unknown", "unknown"),
                        ("blank", "   "), ("newline", "a\nb"), ("bell", "a\x07")):
        add(Case(f"enroll name {label}", "enroll", ["enroll", name, "in/b.jpg", *M(), "--gallery", "g.npz"], 2,
                 setup=enrolled(), precious=["g.npz"]))
    for label, name in (("slash", "a/b"), ("dotdot", "../x"), ("unicode", "Zoë Ünal")):
        add(Case(f"enroll name {label}", "enroll", ["enroll", name, "in/b.jpg", *M(), "--gallery", "g.npz"], 0,
                 setup=enrolled(), check=gallery_names(["colin", name])))
    add(Case("enroll through a symlinked gallery", "enroll", ["enroll", "george", "in/b.jpg", *M(), "--gallery", "link.npz"],
             0, setup=chain(enrolled(gallery="real.npz"), lambda c: (c / "link.npz").symlink_to(c / "real.npz")),
             check=lambda c: None if (c / "link.npz").is_symlink() and gallery_names(["colin", "george"], "real.npz")(c)
             is None else "the link was replaced or the real gallery misses the entry"))
    add(Case("enroll gallery is a folder", "enroll", ["enroll", "x", "in/a.jpg", *M(), "--gallery", "in/data"], 2))
    add(Case("enroll gallery not a zip", "enroll", ["enroll", "x", "in/a.jpg", *M(), "--gallery", "bad.npz"], 2,
             setup=lambda c: (c / "bad.npz").write_text("junk"), precious=["bad.npz"]))
    add(Case("enroll into a NaN gallery", "enroll", ["enroll", "x", "in/a.jpg", *M(), "--gallery", "nan.npz"], 2,
             setup=copy_in("nan.npz"), precious=["nan.npz"]))
    add(Case("enroll gallery of another model", "enroll", ["enroll", "x", "in/a.jpg", *M("m.tflite"), "--gallery", "g.npz"],
             2, setup=chain(enrolled(), lambda c: c.joinpath("m.tflite").write_bytes(
                 (c / "in" / "face.tflite").read_bytes() + b"\0")), precious=["g.npz"]))
    add(Case("enroll empty folder", "enroll", ["enroll", "x", "empty_dir", *M(), "--gallery", "g.npz"], 2,
             setup=lambda c: (c / "empty_dir").mkdir(), no_new=["g.npz"]))
    add(Case("enroll no images", "enroll", ["enroll", "x", *M(), "--gallery", "g.npz"], 2))
    add(Case("enroll --lock-timeout -1", "enroll", ["enroll", "x", "in/a.jpg", *M(), "--lock-timeout", "-1"], 2))
    add(Case("enroll with a held lock", "enroll", ["enroll", "george", "in/b.jpg", *M(), "--gallery", "g.npz",
                                                  "--lock-timeout", "1"], 2, setup=chain(enrolled(), hold_lock),
             precious=["g.npz"]))
    add(Case("enroll after a kill -9 mid-save", "enroll", ["enroll", "george", "in/b.jpg", *M(), "--gallery", "g.npz"], 0,
             setup=chain(enrolled(), killed_save), check=gallery_names(["colin", "george"])))

    # identify
    add(Case("identify ok", "identify", ["identify", "in/a2.jpg", *M(), "--gallery", "g.npz"], 0, setup=enrolled()))
    add(Case("identify NaN gallery", "identify", ["identify", "in/a.jpg", *M(), "--gallery", "in/nan.npz"], 2))
    add(Case("identify missing gallery", "identify", ["identify", "in/a.jpg", *M(), "--gallery", "none.npz"], 2))
    add(Case("identify gallery not a zip", "identify", ["identify", "in/a.jpg", *M(), "--gallery", "in/notzip.npz"], 2))
    add(Case("identify no source", "identify", ["identify", *M(), "--gallery", "g.npz"], 2, setup=enrolled()))
    add(Case("identify image and --video", "identify", ["identify", "in/a.jpg", "--video", "in/a.jpg", *M(),
                                                       "--gallery", "g.npz"], 2, setup=enrolled()))
    add(Case("identify --video missing", "identify", ["identify", "--video", "none.mp4", *M(), "--gallery", "g.npz"], 2,
             setup=enrolled()))
    # OpenCV opens a still photo as a one-frame video: a valid (if odd) stream
    add(Case("identify --video is a photo", "identify", ["identify", "--video", "in/a.jpg", *M(), "--gallery", "g.npz",
                                                        "--output", "out.mp4"], 0, setup=enrolled()))
    add(Case("identify --json stream mode", "identify", ["identify", "--video", "x.mp4", "--json", *M(), "--gallery", "g.npz"],
             2, setup=enrolled()))
    add(Case("identify --top-k 0", "identify", ["identify", "in/a.jpg", "--top-k", "0", *M()], 2))
    add(Case("identify grey photo", "identify", ["identify", "in/grey.png", *M(), "--gallery", "g.npz"], 2, setup=enrolled()))
    add(Case("identify zeroed photo", "identify", ["identify", "in/zeroed.jpg", *M(), "--gallery", "g.npz"], 2, setup=enrolled()))
    add(Case("identify exif photo", "identify", ["identify", "in/exif.jpg", *M(), "--gallery", "g.npz"], 0, setup=enrolled()))
    add(Case("identify name with control chars in a gallery", "identify", ["identify", "in/a.jpg", *M(), "--gallery", "g.npz"],
             0, setup=raw_name_gallery, check=lambda c: None))

    # info
    add(Case("info ok", "info", ["info", "in/face.tflite"], 0))
    add(Case("info --json", "info", ["info", "in/face.tflite", "--json"], 0))
    add(Case("info missing", "info", ["info", "in/none.tflite"], 2))
    add(Case("info folder", "info", ["info", "in/data"], 2))
    add(Case("info photo", "info", ["info", "in/a.jpg"], 2))

    # bench
    def baseline_of(model="m/face.tflite"):
        def setup(c: Path):
            copy_model(c / "m", "face.tflite")
            assert run_cli(["bench", "--write-baseline", c / "b.json", c / model], cwd=c).rc == 0
        return setup
    for how in ("half", "4k", "bitflip"):
        add(Case(f"bench --check model {how}", "bench", ["bench", "--check", "b.json", "m/face.tflite"], 1,
                 setup=chain(baseline_of(), lambda c, h=how: damaged_model(c / "m" / "face.tflite", h)), precious=["b.json"]))
        add(Case(f"bench --write-baseline model {how}", "bench", ["bench", "--write-baseline", "b.json", "m/face.tflite"], 2,
                 setup=chain(baseline_of(), lambda c, h=how: damaged_model(c / "m" / "face.tflite", h)), precious=["b.json"]))
    add(Case("bench --check 10% smaller", "bench", ["bench", "--check", "b.json", "m/face.tflite"], 1,
             setup=chain(baseline_of(), shrink_baseline)))
    add(Case("bench --check 10% smaller --allow-shrink", "bench", ["bench", "--check", "b.json", "m/face.tflite",
                                                                  "--allow-shrink"], 0, setup=chain(baseline_of(), shrink_baseline)))
    add(Case("bench --check unchanged", "bench", ["bench", "--check", "b.json", "m/face.tflite"], 0, setup=baseline_of()))
    add(Case("bench --write-baseline one model merges", "bench",
             ["bench", "--write-baseline", "baseline.json", "m/edgeface_face_int8.tflite"], 0,
             setup=chain(copy_in("baseline.json"), lambda c: copy_model(c / "m", "edgeface_face_int8.tflite")),
             check=lambda c: None if len(__import__("json").loads((c / "baseline.json").read_text())["models"]) >= 7
             else "other models' entries were dropped"))
    add(Case("bench --write-baseline into a folder", "bench", ["bench", "--write-baseline", "in/data", "in/face.tflite"], 2))
    add(Case("bench --write-baseline onto a bad baseline", "bench", ["bench", "--write-baseline", "b.json", "in/face.tflite"],
             2, setup=lambda c: (c / "b.json").write_text("{broken"), precious=["b.json"]))
    for label, text in (("not JSON", "{x"), ("a list", "[]"), ("tolerance 5", '{"tolerance": 5, "models": {}}'),
                        ("bytes text", '{"models": {"face.tflite": {"bytes": "many"}}}')):
        add(Case(f"bench --check baseline {label}", "bench", ["bench", "--check", "b.json", "in/face.tflite"], 2,
                 setup=lambda c, t=text: (c / "b.json").write_text(t), precious=["b.json"]))
    add(Case("bench --check baseline missing", "bench", ["bench", "--check", "none.json", "in/face.tflite"], 2))
    add(Case("bench --check model without entry", "bench", ["bench", "--check", "b.json", "new.tflite"], 1,
             setup=chain(baseline_of(), lambda c: copy_model(c, "new.tflite"))))
    for flag, target in (("--json", "in/data"), ("--markdown", "in/data"), ("--plots", "in/a.jpg"),
                         ("--json", "in/a.jpg/r.json")):
        add(Case(f"bench {flag} {target}", "bench", ["bench", "in/face.tflite", "--runs", "100000", flag, target], 2,
                 timeout=60))
    for opt in (["--threads", "0"], ["--threads", "a,b"], ["--runs", "0"], ["--batch", "0"], ["--tolerance", "x"]):
        add(Case(f"bench {' '.join(opt)}", "bench", ["bench", "in/face.tflite", *opt], 2))
    add(Case("bench no models", "bench", ["bench"], 2))
    add(Case("bench glob without match", "bench", ["bench", "models/*.tflite"], 2))
    add(Case("bench model is a photo", "bench", ["bench", "in/a.jpg", "--runs", "1"], 2))
    add(Case("bench --update-cards without --lfw", "bench", ["bench", "in/face.tflite", "--update-cards"], 2))
    add(Case("bench --lfw missing", "bench", ["bench", "in/face.tflite", "--lfw", "none"], 2))
    add(Case("bench --pairs missing", "bench", ["bench", "in/face.tflite", "--lfw", "in/data", "--pairs", "none.txt"], 2))
    add(Case("bench 1-fold pairs", "bench", ["bench", "in/face.tflite", "--lfw", "{lfw}", "--pairs", "in/pairs1.txt"], 2,
             env={"EDGEFACE_CACHE": "cache"}, no_new=["cache"]))
    add(Case("bench garbage pairs", "bench", ["bench", "in/face.tflite", "--lfw", "{lfw}", "--pairs", "in/pairs_bad.txt"], 2,
             env={"EDGEFACE_CACHE": "cache"}, no_new=["cache"]))

    # align (the checks before TensorFlow; one real run over bad images; one kill -9)
    add(Case("align src missing", "align", ["align", "none", "out"], 2, no_new=["out"]))
    add(Case("align src is a file", "align", ["align", "in/a.jpg", "out"], 2, no_new=["out"]))
    add(Case("align dst is a file", "align", ["align", "in/data", "dst"], 2,
             setup=lambda c: (c / "dst").write_text("keep"), precious=["dst"]))
    add(Case("align dst under a file", "align", ["align", "in/data", "f/out"], 2,
             setup=lambda c: (c / "f").write_text("keep"), precious=["f"]))
    add(Case("align dst inside src", "align", ["align", "data", "data/out"], 2, setup=copy_in("data"), no_new=["data/out"]))
    for opt in (["--template", "bogus"], ["--workers", "-1"], ["--max-side", "5"], ["--max-fail-rate", "2"],
                ["--min-face-size", "0"], ["--limit", "-3"]):
        add(Case(f"align {' '.join(opt)}", "align", ["align", "in/data", "out", *opt], 2, no_new=["out"]))
    add(Case("align a tree with bad images", "align", ["align", "src", "out", "--workers", "1"], 0, tf=True,
             setup=bad_image_tree, check=align_statuses))
    add(Case("align killed with -9", "align", [], 0, tf=True, setup=bad_image_tree, runner=run_align_kill,
             shown="edgeface align src out --workers 2; kill -9 (main); edgeface align src out"))

    # train (config and data checks before TensorFlow; one run that fails inside TensorFlow)
    for s in ("train.log_every=0", "data.batch_size=1", "optim.lr=-1", "optim.lr=abc", "train.epochs=0",
              "data.val_fraction=1.5", "data.val_max_same=0", "train.keep_checkpoints=0", "nope.x=1", "loss.name=foo",
              "train.checkpoint_every=-1", "data.min_images=0", "optim.name=rmsprop", "train.prune=1.0",
              "data.extra=3", "train.epochs"):
        add(Case(f"train --set {s}", "train", ["train", "face", "--data", "in/data", "--out", "run", "--set", s], 2,
                 no_new=["run"]))
    for opt in (["--epochs", "0"], ["--lr", "-1"], ["--lr", "nan"], ["--input-size", "3"], ["--batch-size", "0"],
                ["--fine-tune-blocks", "-2"], ["--backbone", "alexnet"]):
        add(Case(f"train expression {' '.join(opt)}", "train", ["train", "expression", "--data", "{expr}", "--out", "run",
                                                               *opt], 2, no_new=["run"]))
    add(Case("train --config missing", "train", ["train", "face", "--data", "in/data", "--out", "run", "--config", "none.toml"],
             2, no_new=["run"]))
    add(Case("train --config broken TOML", "train", ["train", "face", "--data", "in/data", "--out", "run", "--config",
                                                    "in/bad.toml"], 2, no_new=["run"]))
    add(Case("train data missing", "train", ["train", "face", "--data", "none", "--out", "run"], 2, no_new=["run"]))
    add(Case("train data is a file", "train", ["train", "face", "--data", "in/a.jpg", "--out", "run"], 2, no_new=["run"]))
    add(Case("train data empty", "train", ["train", "face", "--data", "d", "--out", "run"], 2,
             setup=lambda c: (c / "d").mkdir(), no_new=["run"]))
    add(Case("train data one identity", "train", ["train", "face", "--data", "data", "--out", "run"], 2,
             setup=train_tree(lambda d: [shutil.rmtree(p) for p in sorted(d.iterdir())[1:]]), no_new=["run"]))
    for label, make in (("zero-byte PNG", lambda d: (d / OTHER / "zero.png").write_bytes(b"")),
                        ("text as PNG", lambda d: (d / OTHER / "t.png").write_text("text")),
                        ("truncated PNG", lambda d: shutil.copy(d.parent / "in" / "truncated.png", d / OTHER / "tr.png")),
                        ("huge PNG", lambda d: shutil.copy(d.parent / "in" / "huge.png", d / OTHER / "h.png"))):
        add(Case(f"train data with a {label}", "train", ["train", "face", "--data", "data", "--out", "run"], 2,
                 setup=train_tree(make), no_new=["run"]))
    add(Case("train --out is a file", "train", ["train", "face", "--data", "in/data", "--out", "f"], 2,
             setup=lambda c: (c / "f").write_text("keep"), precious=["f"]))
    add(Case("train --resume without a run", "train", ["train", "face", "--data", "in/data", "--out", "run", "--resume"], 2,
             no_new=["run"]))
    add(Case("train --max-steps abc", "train", ["train", "face", "--data", "in/data", "--out", "run", "--max-steps", "x"], 2,
             no_new=["run"]))
    add(Case("train teacher missing", "train", ["train", "face", "--data", "in/data", "--out", "run", "--teacher",
                                               "none.tflite", "--batch-size", "4"], 2, tf=True,
             check=failed_run_marked))
    add(Case("train stopped by SIGTERM", "train", [], 130, tf=True, runner=run_train_term,
             shown="edgeface train face --data in/data --out run ...; kill -TERM"))
    add(Case("train on few identities", "train", ["train", "face", "--data", "in/data", "--out", "run", "--batch-size", "4",
                                                 "--max-steps", "1", "--model", "mobilenetv2", "--set", "model.alpha=0.35"],
             0, tf=True))

    # convert
    add(Case("convert model missing", "convert", ["convert", "none.keras", "--out", "o"], 2, no_new=["o"]))
    add(Case("convert run dir without run.json", "convert", ["convert", "in/data", "--out", "o"], 2, no_new=["o"]))
    add(Case("convert --dtypes bogus", "convert", ["convert", "in/garbage.keras", "--out", "o", "--dtypes", "int4"], 2,
             no_new=["o"]))
    add(Case("convert --budget -1", "convert", ["convert", "in/garbage.keras", "--out", "o", "--budget", "-1"], 2))
    add(Case("convert --prune 1.5", "convert", ["convert", "in/garbage.keras", "--out", "o", "--prune", "1.5"], 2))
    add(Case("convert --calib on LFW", "convert", ["convert", "in/garbage.keras", "--out", "o", "--calib", "{lfw}"], 2,
             no_new=["o"]))
    add(Case("convert --qat-finetune without int8", "convert", ["convert", "in/garbage.keras", "--out", "o", "--dtypes",
                                                               "float32", "--qat-finetune", "5"], 2, no_new=["o"]))
    add(Case("convert --out is a file", "convert", ["convert", "in/garbage.keras", "--out", "f"], 2,
             setup=lambda c: (c / "f").write_text("keep"), precious=["f"]))
    add(Case("convert garbage .keras", "convert", ["convert", "in/garbage.keras", "--out", "o"], 2, tf=True, no_new=["o"]))
    add(Case("convert over budget keeps the shipped model", "convert",
             ["convert", "tiny.keras", "--out", "models", "--name", "edgeface_face", "--dtypes", "int8", "--budget", "1000",
              "--calib", "calib"], 1, tf=True, setup=tiny_keras_and_models,
             precious=["models/edgeface_face_int8.tflite", "models/edgeface_face_int8.json"]))
    return cases


# ---- setups that need more than a copy ---------------------------------------------------------
HOLDERS: list[subprocess.Popen] = []


def hold_lock(c: Path) -> None:
    # holds the lock until its stdin closes, then releases it normally (a killed holder's lock
    # file would stay until the next writer, which is not what this case measures)
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from edgeface.runtime.gallery import locked
        with locked({str(os.path.realpath(c / 'g.npz'))!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=cli_env())
    assert p.stdout.readline().strip() == "held"
    HOLDERS.append(p)


def killed_save(c: Path) -> None:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, numpy as np
        import edgeface.utils.io as io
        from edgeface.runtime import gallery
        from edgeface.utils.io import sha256_file
        io.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        gallery.enroll({str(c / 'g.npz')!r}, "bob", np.ones((1, 128), np.float32), ["b"],
                       sha256_file({str(c / 'in' / 'face.tflite')!r}))
    """)], env=cli_env(), capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGKILL and list(c.glob(".g.npz.*.tmp"))


def raw_name_gallery(c: Path) -> None:
    """A gallery written by an older edgeface that stored a name with a terminal escape."""
    from edgeface.runtime.gallery import Gallery

    enrolled()(c)
    g = Gallery.load(c / "g.npz")
    g.names[0] = "evil\x1b[2K"
    (c / "g.npz").write_bytes(g.to_bytes())


def shrink_baseline(c: Path) -> None:
    import json

    base = json.loads((c / "b.json").read_text())
    base["models"]["face.tflite"]["bytes"] = int((c / "m" / "face.tflite").stat().st_size / 0.9)
    (c / "b.json").write_text(json.dumps(base))


def bad_image_tree(c: Path) -> None:
    for who in (PERSON, OTHER):
        (c / "src" / who).mkdir(parents=True)
        for k in (1, 2):
            shutil.copy(c / "in" / "data" / who / f"{who}_{k:04d}.jpg", c / "src" / who)
    for name in ("empty.png", "text.jpg", "huge.png", "grey.png", "tiny.png", "zeroed.jpg", "exif.jpg"):
        shutil.copy(c / "in" / name, c / "src" / PERSON / name)


def align_statuses(c: Path) -> str | None:
    import json

    recs = {json.loads(line)["source"].split("/")[-1]: json.loads(line) for line in
            (c / "out" / "manifest.jsonl").read_text().splitlines()}
    want = {"empty.png": "bad_image", "text.jpg": "bad_image", "huge.png": "bad_image", "zeroed.jpg": "bad_image",
            "exif.jpg": "ok"}
    bad = {k: recs[k]["status"] for k, v in want.items() if recs.get(k, {}).get("status") != v}
    return f"unexpected statuses {bad}" if bad else None


def failed_run_marked(c: Path) -> str | None:
    import json

    rj = c / "run" / "run.json"
    if not (c / "run").exists():
        return None
    if rj.is_file() and json.loads(rj.read_text()).get("status") == "failed":
        return None
    return "the failed run is not marked failed"


def tiny_keras_and_models(c: Path) -> None:
    code = textwrap.dedent(f"""
        import edgeface, numpy as np, cv2, os
        import tf_keras as keras
        keras.utils.set_random_seed(0)
        inp = keras.Input((112, 112, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(64, 3, strides=2)(inp))
        keras.Model(inp, keras.layers.Dense(128)(x)).save({str(c / 'tiny.keras')!r})
        os.makedirs({str(c / 'calib' / 'p')!r})
        for k in range(4):
            cv2.imwrite({str(c / 'calib' / 'p')!r} + f"/{{k}}.png", np.random.RandomState(k).randint(0, 255, (112, 112, 3), np.uint8))
    """)
    subprocess.run([sys.executable, "-c", code], env=cli_env(), check=True, capture_output=True, timeout=300)
    copy_model(c / "models", "edgeface_face_int8.tflite")


def run_align_kill(c: Path, env: dict) -> tuple[int, str, str]:
    """Start `align` with 2 workers, SIGKILL the main process mid-run; the workers must stop too and
    no crop may appear that the manifest does not list."""
    for k in range(3):  # enough work that the kill lands mid-run
        for who in (PERSON, OTHER):
            for f in (c / "src" / who).glob("*.jpg"):
                shutil.copy(f, f.with_name(f"{f.stem}_{k}.jpg"))
    p = subprocess.Popen([sys.executable, "-m", "edgeface", "align", "src", "out", "--workers", "2"], cwd=c, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (c / "out" / "manifest.jsonl").is_file():
        time.sleep(0.2)
    while time.time() < deadline and (c / "out" / "manifest.jsonl").stat().st_size == 0:
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    p.kill()
    _, err = p.communicate()
    time.sleep(3)  # let orphans (if any) write what they would
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    import json

    listed = {json.loads(line).get("output") for line in (c / "out" / "manifest.jsonl").read_text().splitlines()
              if line.strip()}
    crops = {str(f.relative_to(c / "out")) for f in (c / "out").rglob("*.png")}
    extra = crops - listed
    problems = []
    if alive:
        problems.append(f"{len(alive)} worker(s) still running")
        for pid in alive:
            os.kill(int(pid), signal.SIGKILL)
    if extra:
        problems.append(f"{len(extra)} crops outside the manifest")
    # the next run resumes: it takes over the dead run's lock and cleans its temp files
    again = run_cli(["align", "src", "out", "--workers", "1"], cwd=c, env=env)
    if again.rc != 0:
        problems.append(f"the resumed align exited {again.rc}: {again.err_lines[-1:]}")
    return 0 if not problems else 3, "; ".join(problems), err


def run_train_term(c: Path, env: dict) -> tuple[int, str, str]:
    """SIGTERM a training run once it has started (run.json "running"): it must end "failed"."""
    import json

    p = subprocess.Popen([sys.executable, "-m", "edgeface", "train", "face", "--data", "in/data", "--out", "run",
                          "--batch-size", "4", "--max-steps", "100000", "--model", "mobilenetv2", "--set",
                          "model.alpha=0.35"], cwd=c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (c / "run" / "run.json").is_file() and p.poll() is None:
        time.sleep(0.2)
    time.sleep(2)
    p.terminate()
    _, err = p.communicate(timeout=120)
    status = json.loads((c / "run" / "run.json").read_text()).get("status") if (c / "run" / "run.json").is_file() else None
    problem = "" if status == "failed" else f"run.json status is {status!r}, not 'failed'"
    return p.returncode, problem, err


# ---- running -----------------------------------------------------------------------------------
@dataclass
class Result:
    case: Case
    rc: int
    err_lines: list
    changed: list
    traceback: bool
    wrong_exit: bool
    data_loss: list
    leftovers: list
    problem: str | None
    seconds: float


def leftovers_in(c: Path, case: Case, rc: int) -> list[str]:
    found = []
    for pat in LEFTOVER_PATTERNS:
        found += [str(p.relative_to(c)) for p in c.rglob(pat) if "in" not in p.relative_to(c).parts[:1]]
    if rc != 0:
        found += [n for n in case.no_new if (c / n).exists()]
    return sorted(set(found))


def run_case(case: Case, inputs: Path, lfw: Path, root: Path) -> Result:
    c = root / f"case{len(list(root.iterdir())):03d}"
    c.mkdir()
    (c / "in").symlink_to(inputs)
    if case.setup:
        case.setup(c)
    env = cli_env(**case.env)
    args = [str(a).replace("{lfw}", str(lfw)).replace("{expr}", str(lfw.parents[1] / "expressions" / "ckplus48"))
            for a in case.args]
    before = {k: v for k, v in snapshot(c).items() if not k.startswith("in/")}
    precious = {p: (c / p).read_bytes() for p in case.precious if (c / p).is_file()}
    t0 = time.time()
    if case.runner:
        rc, problem, stderr = case.runner(c, env)
        out_err = [line for line in stderr.splitlines() if line.strip()]
        tb = "Traceback" in stderr
    else:
        try:
            out = run_cli(args, cwd=c, timeout=case.timeout, env=env)
            rc, out_err, tb = out.rc, out.err_lines, out.traceback
        except subprocess.TimeoutExpired:
            rc, out_err, tb = -1, ["(timed out)"], False
        problem = None
    if case.check and rc == case.expect:
        problem = case.check(c)
    secs = time.time() - t0
    for h in HOLDERS:
        h.stdin.close()
        h.wait(timeout=30)
    HOLDERS.clear()
    after = {k: v for k, v in snapshot(c).items() if not k.startswith("in/")}
    lost = [p for p, data in precious.items() if not (c / p).is_file() or (c / p).read_bytes() != data]
    return Result(case, rc, out_err, changed_files(before, after), tb, rc != case.expect, lost,
                  leftovers_in(c, case, rc), problem, secs)


def md_escape(text: str, limit: int = 160) -> str:
    from edgeface.runtime.gallery import safe_text

    text = safe_text(text)
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.replace("|", "\\|")


def write_report(results: list[Result], path: Path, wall: float) -> dict:
    totals = {"cases": len(results), "tracebacks": sum(r.traceback for r in results),
              "wrong exit codes": sum(r.wrong_exit for r in results), "data loss": sum(bool(r.data_loss) for r in results),
              "leftovers": sum(bool(r.leftovers) for r in results), "failed checks": sum(bool(r.problem) for r in results),
              "errors not one line": sum(r.rc not in (0,) and len(r.err_lines) != 1 for r in results)}
    stages = {}
    for r in results:
        stages[r.case.stage] = stages.get(r.case.stage, 0) + 1
    lines = ["# Bad inputs: the issue-16 matrix", "",
             f"`python benchmarks/bad_inputs.py` ran {len(results)} cases against the real CLI in {wall:.0f} s "
             f"({', '.join(f'{k} {v}' for k, v in stages.items())}). Each case runs in a fresh folder on real "
             "files (LFW photos, the shipped int8 model and damaged copies; builders in tests/bad_files.py).", "",
             "## Totals", "", "| | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in totals.items()]
    lines += ["", "Target: 0 tracebacks, 0 wrong exit codes, 0 data loss, 0 leftovers. \"errors not one line\" counts "
              "failing commands whose stderr is not exactly one line (enroll's `skipped:` lines, the lock-wait "
              "notice and train's data warnings are intended extra lines).", "",
              "## Cases", "", "| # | stage | case | command | exit (expected) | stderr lines | first stderr line | files changed | verdict |",
              "|---:|---|---|---|---|---:|---|---|---|"]
    for i, r in enumerate(results, 1):
        verdict = []
        if r.traceback:
            verdict.append("TRACEBACK")
        if r.wrong_exit:
            verdict.append("WRONG EXIT")
        if r.data_loss:
            verdict.append("DATA LOSS: " + ", ".join(r.data_loss))
        if r.leftovers:
            verdict.append("LEFTOVER: " + ", ".join(r.leftovers))
        if r.problem:
            verdict.append("CHECK: " + r.problem)
        cmd = r.case.shown or "edgeface " + " ".join(a if len(a) < 40 else a[:20] + "…" for a in map(str, r.case.args))
        lines.append(f"| {i} | {r.case.stage} | {md_escape(r.case.name, 60)} | `{md_escape(cmd, 120)}` | "
                     f"{r.rc} ({r.case.expect}) | {len(r.err_lines)} | {md_escape(r.err_lines[0] if r.err_lines else '')} | "
                     f"{md_escape(', '.join(r.changed) or '-', 80)} | {'; '.join(verdict) or 'ok'} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return totals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "bad_inputs.md")
    ap.add_argument("--only", default=None, help="Run only cases whose name contains this.")
    ap.add_argument("--no-tf", action="store_true", help="Skip the cases that load TensorFlow.")
    args = ap.parse_args(argv)
    data = shared_data()
    if data is None or not SHIPPED.exists():
        print("bad_inputs: needs ../shared/data (LFW) and models/edgeface_face_int8.tflite", file=sys.stderr)
        return 2
    lfw = data / "lfw" / "lfw-deepfunneled"
    cases = [c for c in build_cases() if (not args.only or args.only in c.name) and not (args.no_tf and c.tf)]
    t0 = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeface-bad-") as tmp:
        tmp = Path(tmp)
        make_inputs(tmp / "inputs", lfw)
        inputs_before = snapshot(tmp / "inputs")
        (tmp / "cases").mkdir()
        for i, case in enumerate(cases, 1):
            r = run_case(case, tmp / "inputs", lfw, tmp / "cases")
            flag = "" if not (r.traceback or r.wrong_exit or r.data_loss or r.leftovers or r.problem) else "  <-- "
            print(f"[{i}/{len(cases)}] {r.rc} (want {case.expect}) {r.seconds:5.1f}s {case.stage}: "
                  f"{case.name[:60]!r}{flag}{(r.err_lines or [''])[0][:100] if flag else ''}", flush=True)
            results.append(r)
        if snapshot(tmp / "inputs") != inputs_before:
            print("bad_inputs: a case modified the shared inputs", file=sys.stderr)
    totals = write_report(results, args.out, time.time() - t0)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
