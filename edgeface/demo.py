"""`make demo`: the main job on a built-in default.

Takes the shipped int8 face model and runs the whole TF-free on-device pipeline (decode, MTCNN
detect as .tflite, 5-point align, embed, cosine) on real face pairs, then says same/different with
the model card's LFW-calibrated threshold:
- with the shared data: the first 5 same-person and 5 different-person pairs of LFW View 2 fold 1;
- without it: matplotlib's bundled public-domain portrait of Grace Hopper against a rotated,
  rescaled, mirrored and re-compressed copy of itself (same person), as a self-check.
Writes demo_out/pairs.png (each pair's aligned crops, both names, the score on a bar against the
threshold, the decision and whether it was right) and prints stage timings.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.cli import default_model
from edgeface.runtime.pipeline import FacePipeline
from edgeface.utils.images import read_image
from edgeface.utils.paths import REPO_ROOT, shared_data


def person(path) -> str:
    """LFW's file stem Colin_Powell_0001 -> "Colin Powell"."""
    return Path(path).stem.rsplit("_", 1)[0].replace("_", " ")


def lfw_demo_pairs(n: int = 5):
    """(name_a, name_b, image_a, image_b, same) for the first n same and n different pairs of fold 1."""
    from edgeface.data.pairs import read_pairs

    root = shared_data()
    if root is None or not (root / "lfw" / "pairs.txt").exists():
        return None
    image_root = root / "lfw" / "lfw-deepfunneled"
    fold = read_pairs(root / "lfw" / "pairs.txt", image_root=image_root).folds[0]
    same = [p for p in fold if p[2]][:n]
    diff = [p for p in fold if not p[2]][:n]
    return [(person(a), person(b), read_image(a), read_image(b), s) for a, b, s in same + diff]


def builtin_pair():
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    a = read_image(path)
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 8.0, 0.8)
    b = cv2.warpAffine(a, m, (w, h), borderMode=cv2.BORDER_REFLECT)[:, ::-1]
    ok, buf = cv2.imencode(".jpg", b, [cv2.IMWRITE_JPEG_QUALITY, 40])
    b = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return [("Grace Hopper", "Grace Hopper (rotated, mirrored, JPEG-40 copy)", a, np.ascontiguousarray(b), True)]


SAID_SAME, SAID_DIFF = "#1f77b4", "#ff7f0e"  # the bar's colour is the decision; right/wrong is spelt out


def draw_pairs(rows: list[dict], title: str, threshold: float, out: Path, far_threshold: float | None = None) -> Path:
    """One row per pair: crop A, crop B, then both names, the score as a bar against the threshold
    line, the truth, the decision and whether it was right."""
    from edgeface.utils.plots import pyplot, save_figure

    plt = pyplot()
    n = len(rows)
    height = 1.25 * n + 1.0  # inches: a row per pair, then the title and legend
    fig, axes = plt.subplots(n, 3, figsize=(9.5, height), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 4.6], "hspace": 0.3, "wspace": 0.04})
    fig.subplots_adjust(top=1 - 0.95 / height, bottom=0.45 / height)
    lo = min(-0.2, min(r["score"] for r in rows) - 0.05)
    for (ax_a, ax_b, ax), r in zip(axes, rows):
        for a, crop in ((ax_a, r["crop_a"]), (ax_b, r["crop_b"])):
            a.imshow(crop)
            a.set_axis_off()
        ax.barh([0], [r["score"]], height=0.5, color=SAID_SAME if r["said_same"] else SAID_DIFF)
        bar_zone = {"ymin": 0.0, "ymax": 0.5}  # lines stay below the text (ylim -0.6..1.5)
        ax.axvline(threshold, color="black", lw=1.6, **bar_zone)
        if far_threshold is not None:
            ax.axvline(far_threshold, color="black", lw=1, ls=":", **bar_zone)
        for x in np.arange(0, 1.01, 0.2):
            ax.axvline(x, color="#bbbbbb" if x == 0 else "#eeeeee", lw=0.8, zorder=0, **bar_zone)
        ax.set_xlim(lo, 1.0)
        ax.set_ylim(-0.6, 1.5)
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="x", labelsize=7, length=2, labelbottom=ax is axes[-1][2])
        names = r["name_a"] if r["name_a"] == r["name_b"] else f"{r['name_a']}  vs  {r['name_b']}"
        ax.text(lo, 1.05, names, fontsize=9.5, weight="bold", va="center")
        right = r["said_same"] == r["same"]
        ax.text(lo, 0.62, f"truth: {'same person' if r['same'] else 'different people'}    said: "
                f"{'same person' if r['said_same'] else 'different people'}", fontsize=8.5, va="center")
        ax.text(1.0, 0.62, "\u2713 right" if right else "\u2717 WRONG", fontsize=9.5, weight="bold", va="center",
                ha="right", color="#1a7f37" if right else "#cf222e")
        ax.text(max(r["score"], 0) + 0.01, 0, f"{r['score']:+.3f}", fontsize=8, va="center",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    axes[-1][2].set_xlabel("cosine score (bar): at or right of the threshold line = said same person", fontsize=8)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    legend = [Patch(color=SAID_SAME, label="said same person"), Patch(color=SAID_DIFF, label="said different people"),
              Line2D([], [], color="black", lw=1.6, label=f"threshold {threshold:.3f}")]
    if far_threshold is not None:
        legend.append(Line2D([], [], color="black", lw=1, ls=":", label=f"stricter: FAR 1e-3 ({far_threshold:.3f})"))
    fig.legend(handles=legend, loc="upper center", ncol=len(legend), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.55 / height))
    fig.suptitle(title, fontsize=10.5, y=1 - 0.05 / height, va="top")
    return save_figure(fig, out, dpi=100)


def main() -> int:
    from edgeface.runtime.cli import decision_threshold

    model = default_model()
    pipe = FacePipeline(model)
    threshold, source = decision_threshold(None, None, pipe.embedder)
    if threshold is None:
        raise EdgefaceError(f"{model.name} has no verification threshold in its card: run `make bench`")
    far3 = pipe.embedder.card.operating_points.get("far_1e-3")
    pairs = lfw_demo_pairs() or builtin_pair()
    print(f"model {model.name} ({model.stat().st_size:,} bytes, {pipe.embedder.model.backend}), "
          f"threshold {threshold:.3f} ({source})")
    lines, rows = [], []
    for name_a, name_b, a, b, same in pairs:
        _, ca, ea = pipe.main_face(a, "a", fallback_crop=True)
        _, cb, eb = pipe.main_face(b, "b", fallback_crop=True)
        score = float(ea @ eb)
        said_same = score >= threshold
        rows.append({"name_a": name_a, "name_b": name_b, "crop_a": ca, "crop_b": cb, "score": score,
                     "same": same, "said_same": said_same})
        lines.append(f"  {'same' if same else 'diff'}  cos {score:+.3f} -> {'SAME' if said_same else 'DIFFERENT':9s} "
                     f"{'ok ' if said_same == same else 'WRONG'}  {name_a} vs {name_b}")
    correct = sum(r["said_same"] == r["same"] for r in rows)
    print("\n".join(lines))
    print(f"{correct}/{len(pairs)} decided correctly")
    t = pipe.times.medians()
    print("median ms per call: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    title = (f"{model.name} ({pipe.embedder.card.dtype or '?'}): {correct} of {len(rows)} pairs decided right\n"
             f"threshold {threshold:.3f} = {source}")
    out = draw_pairs(rows, title, threshold, REPO_ROOT / "demo_out" / "pairs.png",
                     far_threshold=far3.threshold if far3 else None)
    print(f"pairs with names, scores against the threshold and decisions: {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgefaceError as e:
        print(f"edgeface: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
