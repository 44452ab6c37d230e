"""The seeds' classic comparison: SVM / logistic regression / nearest centre on pixels, hand-crafted
descriptors and the shipped edgeface embeddings, for face identification and for expressions.

    nice -n 19 python benchmarks/baselines.py --out benchmarks     # writes baselines.json, .md, .png

Faces: closed-set identification on the 13 CelebA identities the shipped MobileNetV2 embedder
(`edgeface_face_mnv2_*`) held out from training (data.val_fraction 0.05, seed 0 over the aligned
CelebA folder: `edgeface.data.folders.split_by_identity`), aligned 112x112 crops from
cache/celeba/arcface112. k = 1, 3, 5 enrolment images per person, every other image a query;
`--draws` random draws, mean +- std. Expressions: CK+48 with the subject-disjoint split
(`edgeface.data.expressions.load_dataset(..., split_by="subject")`, seed 0) and FER2013
(a seeded train subset; test = PublicTest). Everything runs on one thread.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import edgeface  # noqa: E402,F401

cv2.setNumThreads(1)
CLASSIFIERS = ("linear SVM", "RBF SVM", "logistic regression", "nearest centre (cosine)")


# ---- features ---------------------------------------------------------------------------------

def l2n(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class PixelsPCA:
    """Grey pixels at `side` x `side`, PCA fitted on a reference set of other images, L2-normalised."""
    def __init__(self, side, n_comp, reference_gray):
        from sklearn.decomposition import PCA
        self.side = side
        ref = self._vec(reference_gray)
        self.pca = PCA(min(n_comp, len(ref) - 1), random_state=0).fit(ref)
        self.bytes = int(4 * (self.pca.components_.size + self.pca.mean_.size))

    def _vec(self, gray):
        return np.stack([cv2.resize(g, (self.side, self.side), interpolation=cv2.INTER_AREA).ravel()
                         for g in gray]).astype(np.float32) / 255.0

    def __call__(self, gray):
        return l2n(self.pca.transform(self._vec(gray)))


def hist_feature(fn):
    """A histogram descriptor per image, square-rooted (Hellinger) and L2-normalised."""
    return lambda gray: l2n(np.sqrt(np.stack([fn(g) for g in gray])))


def timed_per_image(fn, images, n=30):
    """Median CPU seconds per single image (one call per image, process time: immune to other jobs)."""
    ts = []
    for im in images[:n]:
        t = time.process_time()
        fn(im[None])
        ts.append(time.process_time() - t)
    return float(np.median(ts))


# ---- classifiers ------------------------------------------------------------------------------

def make_classifier(name, seed=0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, LinearSVC
    if name == "linear SVM":
        return LinearSVC(C=1.0, random_state=seed)
    if name == "RBF SVM":
        return SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed)
    if name == "logistic regression":
        return LogisticRegression(C=1.0, max_iter=5000, random_state=seed)
    if name == "nearest centre (cosine)":
        return NearestCentre()
    raise ValueError(name)


class NearestCentre:
    """What `edgeface identify` does: the unit-length mean per class, best cosine wins."""
    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.centres = l2n(np.stack([x[y == c].mean(0) for c in self.classes_]))
        return self

    def predict(self, x):
        return self.classes_[np.argmax(l2n(x) @ self.centres.T, axis=1)]


def classifier_bytes(clf) -> int:
    """float32 bytes of what must be stored to classify: weights (linear), support vectors + duals (RBF), centres."""
    if hasattr(clf, "centres"):
        return int(4 * clf.centres.size)
    if hasattr(clf, "support_vectors_"):
        return int(4 * (clf.support_vectors_.size + clf.dual_coef_.size + clf.intercept_.size))
    return int(4 * (clf.coef_.size + clf.intercept_.size))


def per_query_seconds(clf, x, n=100):
    ts = []
    for q in x[:n]:
        t = time.process_time()
        clf.predict(q[None])
        ts.append(time.process_time() - t)
    return float(np.median(ts))


# ---- faces ------------------------------------------------------------------------------------

def held_out_identities(root: Path):
    from edgeface.data.folders import scan_folder, split_by_identity
    folder = scan_folder(root, min_images=2)
    train, val = split_by_identity(folder, 0.05, seed=0)
    held = sorted({folder.class_names[i] for i in np.unique(val.labels)})
    others = sorted({folder.class_names[i] for i in np.unique(train.labels)})
    return held, others


def read_rgb(p):
    from edgeface.utils.images import read_image
    return read_image(p)


def faces_benchmark(args, log):
    from edgeface.features import lbp, lpq, phog
    from edgeface.runtime.embedder import FaceEmbedder
    root = REPO / "cache" / "celeba" / "arcface112"
    if not (root / "manifest.jsonl").is_file():
        raise SystemExit(f"{root} has no manifest.jsonl: run `edgeface align ../shared/data/faces/celeba {root}` first")
    held, others = held_out_identities(root)
    paths, labels = [], []
    for i, ident in enumerate(held):
        ps = sorted((root / ident).glob("*.png"))
        paths += ps
        labels += [i] * len(ps)
    labels = np.array(labels)
    rgb = np.stack([read_rgb(p) for p in paths])
    gray = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in rgb])
    rng = np.random.default_rng(0)
    ref_paths = [p for ident in others for p in sorted((root / ident).glob("*.png"))]
    ref_paths = [ref_paths[i] for i in np.sort(rng.choice(len(ref_paths), min(args.pca_reference, len(ref_paths)), replace=False))]
    ref_gray = np.stack([cv2.cvtColor(read_rgb(p), cv2.COLOR_RGB2GRAY) for p in ref_paths])
    log(f"faces: {len(held)} held-out identities, {len(paths)} crops; PCA reference {len(ref_gray)} crops of other identities")

    pix = PixelsPCA(32, 100, ref_gray)
    feats = {  # name: (fn on a batch, input kind, feature-model bytes, description)
        "pixels + PCA": (pix, "gray", pix.bytes, f"32x32 grey, PCA {pix.pca.n_components_} (fit on {len(ref_gray)} other-identity crops)"),
        "LBP": (hist_feature(lambda g: lbp(g, grid=(4, 4))), "gray", 0, "8-neighbour LBP, 4x4 cells x 256"),
        "LPQ": (hist_feature(lambda g: lpq(g, grid=(4, 4))), "gray", 0, "LPQ 7x7, 4x4 cells x 256"),
        "PHOG": (hist_feature(lambda g: phog(g, bins=8, levels=3)), "gray", 0, "PHOG 8 bins, levels 0-3 (680)"),
    }
    for name in args.face_models:
        emb = FaceEmbedder(REPO / "models" / f"{name}.tflite", num_threads=1)
        feats[name] = (lambda crops, e=emb: e.embed(crops), "rgb", int(emb.path.stat().st_size),
                       f"{emb.dim}-d embedding, flip TTA (as `edgeface identify`)")
    rows = []
    for fname, (fn, kind, fbytes, desc) in feats.items():
        src = gray if kind == "gray" else rgb
        t = time.time()
        x = np.concatenate([fn(src[i:i + 64]) for i in range(0, len(src), 64)])
        lat_feat = timed_per_image(fn, src)
        log(f"  {fname}: {x.shape[1]} dims ({time.time() - t:.0f} s), {1e3 * lat_feat:.2f} ms/image")
        for k in args.k:
            for cname in CLASSIFIERS:
                accs, bytes_, lat = [], 0, 0.0
                for d in range(args.draws):
                    r = np.random.default_rng(1000 * k + d)
                    enrol = np.zeros(len(labels), bool)
                    for c in np.unique(labels):
                        idx = np.flatnonzero(labels == c)
                        enrol[r.choice(idx, k, replace=False)] = True
                    clf = make_classifier(cname, d).fit(x[enrol], labels[enrol])
                    accs.append(float(np.mean(clf.predict(x[~enrol]) == labels[~enrol])))
                    if d == 0:
                        bytes_, lat = classifier_bytes(clf), per_query_seconds(clf, x[~enrol])
                rows.append({"task": "faces", "feature": fname, "feature_desc": desc, "dims": int(x.shape[1]), "k": k,
                             "classifier": cname, "acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
                             "draws": args.draws, "queries": int((~enrol).sum()), "feature_bytes": fbytes,
                             "classifier_bytes": bytes_, "feature_ms": 1e3 * lat_feat, "classifier_ms": 1e3 * lat})
        best5 = max((r for r in rows if r["feature"] == fname and r["k"] == max(args.k)), key=lambda r: r["acc_mean"])
        log(f"    best at k={max(args.k)}: {best5['classifier']} {best5['acc_mean']:.3f}")
    return {"identities": held, "images": int(len(paths)), "rows": rows}


# ---- expressions ------------------------------------------------------------------------------

def expression_benchmark(args, log):
    from edgeface.data import expressions as xd
    from edgeface.features import lbp, lpq, phog
    from edgeface.runtime.interpreter import TFLiteModel
    from edgeface.utils.paths import shared_data
    root = shared_data() / "expressions"
    out = {}
    for kind in args.expr_data:
        if kind == "ckplus48":
            data = xd.load_dataset(root / "ckplus48", "ckplus48", seed=0, split_by="subject")
        else:
            data = xd.load_dataset(root / "fer2013", "fer2013", seed=0)
        tr = data.splits["train"]
        if kind == "fer2013" and args.fer_train and len(tr) > args.fer_train:
            tr = [tr[i] for i in np.sort(np.random.default_rng(0).choice(len(tr), args.fer_train, replace=False))]
        x_tr, y_tr = xd.load_images(tr, 48, 1, True, "train")
        x_te, y_te = xd.load_images(data.splits["test"], 48, 1, True, "test")
        g_tr, g_te = x_tr[..., 0], x_te[..., 0]
        log(f"{kind}: train {len(y_tr)}, test {len(y_te)} ({data.split_spec.get('split_by')})")
        pix = PixelsPCA(48, 100, g_tr)
        feats = {
            "pixels + PCA": (pix, pix.bytes, f"48x48 grey+CLAHE, PCA {pix.pca.n_components_} (fit on train)"),
            "LBP": (hist_feature(lambda g: lbp(g, grid=(4, 4))), 0, "LBP, 4x4 cells x 256"),
            "LPQ": (hist_feature(lambda g: lpq(g, grid=(4, 4))), 0, "LPQ 7x7, 4x4 cells x 256"),
            "PHOG": (hist_feature(lambda g: phog(g, bins=8, levels=3)), 0, "PHOG 8 bins, levels 0-3"),
        }
        rows = []
        for fname, (fn, fbytes, desc) in feats.items():
            a_tr, a_te = fn(g_tr), fn(g_te)
            lat_feat = timed_per_image(fn, g_te)
            for cname in CLASSIFIERS:
                t = time.time()
                clf = make_classifier(cname).fit(a_tr, y_tr)
                acc = float(np.mean(clf.predict(a_te) == y_te))
                rows.append({"task": kind, "feature": fname, "feature_desc": desc, "dims": int(a_tr.shape[1]),
                             "classifier": cname, "acc": acc, "fit_seconds": time.time() - t, "feature_bytes": fbytes,
                             "classifier_bytes": classifier_bytes(clf), "feature_ms": 1e3 * lat_feat,
                             "classifier_ms": 1e3 * per_query_seconds(clf, a_te)})
            log(f"  {fname}: " + ", ".join(f"{r['classifier']} {r['acc']:.3f}" for r in rows if r["feature"] == fname))
        if kind == "ckplus48":  # the shipped CNN's card split is this subject split: measure it here
            xin = xd.normalize(x_te)
            for dt in ("int8", "float32"):
                p = REPO / "models" / f"edgeface_expr_cnn_{dt}.tflite"
                if not p.is_file():
                    continue
                m = TFLiteModel(p, num_threads=1)
                pred = np.concatenate([m.run(xin[i:i + 1]).reshape(1, -1) for i in range(len(xin))]).argmax(1)
                ts = []
                for i in range(50):
                    t = time.process_time()
                    m.run(xin[i % len(xin):i % len(xin) + 1])
                    ts.append(time.process_time() - t)
                rows.append({"task": kind, "feature": f"CNN edgeface_expr_cnn_{dt} (measured)", "feature_desc": "pixels",
                             "dims": 0, "classifier": "CNN softmax", "acc": float(np.mean(pred == y_te)), "fit_seconds": None,
                             "feature_bytes": int(p.stat().st_size), "classifier_bytes": 0,
                             "feature_ms": 1e3 * float(np.median(ts)), "classifier_ms": 0.0})
                log(f"  {rows[-1]['feature']}: {rows[-1]['acc']:.3f}")
        out[kind] = {"train": int(len(y_tr)), "test": int(len(y_te)), "classes": data.class_names, "rows": rows}
    return out


# ---- report -----------------------------------------------------------------------------------

FER_CNN_ROWS = [  # from benchmarks/expressions.md (FER2013 table; not re-run here)
    ("small CNN (expressions.md), int8", 0.5077, 581152), ("small CNN, head pruned (expressions.md), int8", 0.5077, 356728)]


NOTES = "<!-- notes: written by hand, kept when the script rewrites the tables above -->"


def write_markdown(res, path: Path, png: str):
    L = ["# Baselines: SVM, logistic regression and nearest centre against the CNN and the edgeface embedders", "",
         f"<!-- written by benchmarks/baselines.py ({res['finished']}) -->", "", "    " + res["command"], "",
         f"Wall time {res['seconds']:.0f} s on the shared 2-core box (nice 19, every library on 1 thread). "
         f"Raw rows: `baselines.json`; chart: `{png}`. Classifiers are scikit-learn defaults (C = 1, RBF gamma = "
         "'scale'), never tuned on queries or test images; every feature is L2-normalised (histograms square-rooted "
         "first). Bytes: the feature model (the .tflite file, the PCA matrix; 0 for the descriptors, which are code) "
         "plus the classifier's float32 parameters (weights; support vectors + dual coefficients for the RBF SVM; "
         "class centres). Latency: median single-image feature time + single-query classifier time, 1 thread, measured as process CPU time (the box is shared, so wall time would mostly measure the other jobs; CPU time is what one free core would take).", ""]
    f = res.get("faces")
    if f:
        ks = sorted({r["k"] for r in f["rows"]})
        L += ["## Face identification (closed set)", "",
              f"{len(f['identities'])} CelebA identities held out from the shipped MobileNetV2 embedder's training "
              f"({', '.join(f['identities'])}; {f['images']} aligned crops), chance = {1 / len(f['identities']):.3f}. "
              f"k enrolment images per person, every other image a query; {f['rows'][0]['draws']} random draws per k "
              "(the same draws for every row).", "",
              "| feature | dims | classifier | " + " | ".join(f"k={k} acc" for k in ks)
              + " | feature bytes | classifier bytes (k=5) | ms/query (feature + classifier) |",
              "|---|---:|---|" + "---:|" * len(ks) + "---:|---:|---:|"]
        for feat in dict.fromkeys(r["feature"] for r in f["rows"]):
            for c in CLASSIFIERS:
                rs = {r["k"]: r for r in f["rows"] if r["feature"] == feat and r["classifier"] == c}
                r5 = rs[max(ks)]
                L.append(f"| {feat} | {r5['dims']} | {c} | " + " | ".join(f"{rs[k]['acc_mean']:.3f} ± {rs[k]['acc_std']:.3f}" for k in ks)
                         + f" | {r5['feature_bytes']:,} | {r5['classifier_bytes']:,} | {r5['feature_ms']:.2f} + {r5['classifier_ms']:.3f} |")
        L.append("")
    for kind, e in (res.get("expressions") or {}).items():
        title = {"ckplus48": "CK+48, subject-disjoint split", "fer2013": "FER2013 subset, test = PublicTest"}[kind]
        L += [f"## Expressions: {title} (train {e['train']}, test {e['test']}, {len(e['classes'])} classes)", "",
              "| feature | dims | classifier | test acc | feature bytes | classifier bytes | ms/query (feature + classifier) |",
              "|---|---:|---|---:|---:|---:|---:|"]
        for r in e["rows"]:
            L.append(f"| {r['feature']} | {r['dims'] or ''} | {r['classifier']} | {r['acc']:.3f} | {r['feature_bytes']:,} | "
                     f"{r['classifier_bytes']:,} | {r['feature_ms']:.2f} + {r['classifier_ms']:.3f} |")
        if kind == "fer2013":
            for name, acc, b in FER_CNN_ROWS:
                L.append(f"| {name} | | CNN softmax | {acc:.3f} | {b:,} | 0 | (not re-run) |")
        L.append("")
    keep = path.read_text().split(NOTES, 1)[1] if path.is_file() and NOTES in path.read_text() else "\n"
    path.write_text("\n".join(L) + "\n" + NOTES + keep)


def plot(res, path: Path):
    from edgeface.utils.plots import pyplot, save_figure
    plt = pyplot()
    panels = []
    if res.get("faces"):
        k = max(r["k"] for r in res["faces"]["rows"])
        panels.append((f"faces, k={k} enrolment images ({len(res['faces']['identities'])} identities)",
                       [r for r in res["faces"]["rows"] if r["k"] == k], "acc_mean", "acc_std"))
    for kind, e in (res.get("expressions") or {}).items():
        rows = list(e["rows"])
        if kind == "fer2013":  # quoted from expressions.md (trained on the full 7,636-image subset)
            rows += [{"feature": n.replace(" (expressions.md)", "") + " (quoted)", "classifier": "CNN softmax", "acc": a}
                     for n, a, _ in FER_CNN_ROWS]
        panels.append((kind, rows, "acc", None))
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.6 * len(panels)), squeeze=False)
    colors = dict(zip(CLASSIFIERS + ("CNN softmax",), ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    for ax, (title, rows, key, err) in zip(axes[:, 0], panels):
        feats = list(dict.fromkeys(r["feature"] for r in rows))
        w = 0.2
        for j, c in enumerate(CLASSIFIERS + ("CNN softmax",)):
            xs, ys, es = [], [], []
            for i, ft in enumerate(feats):
                r = [r for r in rows if r["feature"] == ft and r["classifier"] == c]
                if r:
                    xs.append(i + (j - 1.5) * w if c != "CNN softmax" else i)
                    ys.append(r[0][key])
                    es.append(r[0][err] if err else 0)
            if xs:
                ax.bar(xs, ys, w, yerr=es if err else None, color=colors[c], label=c)
        ax.set_xticks(range(len(feats)))
        ax.set_xticklabels([f.replace("edgeface_", "").replace(" (measured)", "").replace(", head pruned", " pruned")
                            for f in feats], fontsize=8)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks")
    ap.add_argument("--parts", nargs="+", default=["faces", "expressions"], choices=["faces", "expressions"])
    ap.add_argument("--k", nargs="+", type=int, default=[1, 3, 5])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--pca-reference", type=int, default=1000)
    ap.add_argument("--face-models", nargs="+", default=["edgeface_face_mnv2_int8", "edgeface_face_mnv2_float32"])
    ap.add_argument("--expr-data", nargs="+", default=["ckplus48", "fer2013"], choices=["ckplus48", "fer2013"])
    ap.add_argument("--fer-train", type=int, default=3000)
    ap.add_argument("--render", metavar="BASELINES_JSON", help="only rewrite baselines.md/.png from an earlier json")
    args = ap.parse_args(argv)
    os.environ.setdefault("EDGEFACE_NO_PROGRESS", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        res = json.loads(Path(args.render).read_text())
        plot(res, out / "baselines.png")
        write_markdown(res, out / "baselines.md", "baselines.png")
        return
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    res = {"command": "nice -n 19 python benchmarks/baselines.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "args": vars(args)}
    if "faces" in args.parts:
        res["faces"] = faces_benchmark(args, log)
    if "expressions" in args.parts:
        res["expressions"] = expression_benchmark(args, log)
    res["seconds"] = time.time() - t0
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / "baselines.json").write_text(json.dumps(res, indent=1))
    plot(res, out / "baselines.png")
    write_markdown(res, out / "baselines.md", "baselines.png")
    log(f"wrote {out / 'baselines.md'}")


if __name__ == "__main__":
    main()
