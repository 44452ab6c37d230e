"""PIC benchmark: an autoencoder on LPQ / PHOG features of expression crops, pruned by hidden-unit angles.

    nice -n 19 python benchmarks/pic.py --out benchmarks            # writes pic.json, pic.md, pic.png

For each data set (CK+48 subject-disjoint split; the FER2013 subset, test = PublicTest) and each
descriptor (LPQ, PHOG): standardised features -> autoencoder (hidden tanh code) trained to
convergence (early stopping on the val split) -> two pruning runs from that same model:
  thresholds    merge < 15 deg, remove pairs > 165 deg, fine-tune between rounds, until no pair qualifies
  most_similar  the study's variant: merge the most similar pair each round (one unit), down to 2 units
At each size: units, reconstruction loss (MSE of standardised features: 1.0 = predicting the mean),
smallest angle between live units, and the test accuracy of a logistic regression trained on the
code of the train split. Only the test split is reported; nothing is chosen on it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import edgeface  # noqa: E402,F401

from edgeface.utils.paths import shared_data  # noqa: E402

TABLE_SIZES = (64, 48, 40, 32, 24, 16, 12, 8, 6, 4, 3, 2)


def descriptor(name: str, lpq_grid: int = 1, phog_levels: int = 2):
    from edgeface.features import lpq, phog
    if name == "lpq":
        text = ("one 256-bin histogram of the face" if lpq_grid == 1 else f"{lpq_grid}x{lpq_grid} cells x 256 bins")
        return lambda im: lpq(im, win=7, grid=(lpq_grid, lpq_grid)), f"LPQ, 7x7 window, rho 0.9, {text}"
    if name == "phog":
        cells = "+".join(str(4 ** l) for l in range(phog_levels + 1))
        return (lambda im: phog(im, bins=8, levels=phog_levels, angle=180),
                f"PHOG, 8 bins 0-180 deg, levels 0-{phog_levels} ({cells} cells)")
    raise SystemExit(f"unknown descriptor {name}")


def load_split(kind: str, root: Path, fer_train: int, seed: int):
    from edgeface.data import expressions as xd
    if kind == "ckplus48":
        data = xd.load_dataset(root / "ckplus48", "ckplus48", seed=seed, split_by="subject")
    else:
        data = xd.load_dataset(root / "fer2013", "fer2013", seed=seed)
    out = {}
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        samples = data.splits[split]
        if kind == "fer2013" and split == "train" and fer_train and len(samples) > fer_train:
            samples = [samples[i] for i in np.sort(rng.choice(len(samples), fer_train, replace=False))]
        x, y = xd.load_images(samples, 48, 1, True, f"{kind} {split}")
        out[split] = (x[..., 0], y)
    return out, data.class_names, data.split_spec


def standardise(train, *others):
    """sqrt (Hellinger) then z-score with the train statistics (constant dims -> 0)."""
    t = np.sqrt(train)
    mu, sd = t.mean(0), t.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return [((np.sqrt(a) - mu) / sd).astype(np.float32) for a in (train, *others)]


def classifier_eval(codes_tr, y_tr, codes_te, y_te, seed=0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    sc = StandardScaler().fit(codes_tr)
    clf = LogisticRegression(max_iter=3000, C=1.0, random_state=seed).fit(sc.transform(codes_tr), y_tr)
    return float(clf.score(sc.transform(codes_te), y_te))


def run_one(kind, desc_name, splits, args, log):
    from edgeface.optimize.pic import build_autoencoder, encode, fit, pic_prune
    fn, desc_text = descriptor(desc_name, args.lpq_grid, args.phog_levels)
    t0 = time.time()
    feats = {s: np.stack([fn(im) for im in splits[s][0]]) for s in splits}
    t_feat = time.time() - t0
    x_tr, x_va, x_te = standardise(feats["train"], feats["val"], feats["test"])
    y_tr, y_te = splits["train"][1], splits["test"][1]
    acc_raw = classifier_eval(x_tr, y_tr, x_te, y_te, args.seed)
    log(f"{kind}/{desc_name}: features {x_tr.shape[1]} dims in {t_feat:.1f} s, LR on raw features {acc_raw:.3f}")

    def evaluate(m):
        return {"test_acc": classifier_eval(encode(m, x_tr), y_tr, encode(m, x_te), y_te, args.seed)}

    t0 = time.time()
    base = build_autoencoder(x_tr.shape[1], args.hidden, seed=args.seed)
    tr = fit(base, x_tr, x_va, args.epochs, args.lr, args.batch, patience=args.patience, seed=args.seed)
    t_train = time.time() - t0
    log(f"  autoencoder {args.hidden} units: {tr['epochs']} epochs, val loss {tr['val_loss']:.4f} ({t_train:.0f} s)")
    weights = base.get_weights()
    runs = {}
    for rule, ft in (("thresholds", args.finetune_thresholds), ("most_similar", args.finetune_most_similar)):
        start = build_autoencoder(x_tr.shape[1], args.hidden, seed=args.seed)
        start.set_weights(weights)
        t0 = time.time()
        _, rows = pic_prune(start, x_tr, x_va, rule=rule, finetune_epochs=ft, lr=args.lr, batch_size=args.batch,
                            min_units=args.min_units, evaluate=evaluate, seed=args.seed,
                            finetune_patience=args.finetune_patience)
        runs[rule] = {"rows": rows, "seconds": time.time() - t0, "finetune_epochs": ft}
        r0, r1 = rows[0], rows[-1]
        log(f"  {rule}: {r0['units']} -> {r1['units']} units in {len(rows) - 1} rounds ({runs[rule]['seconds']:.0f} s); "
            f"val loss {r0['val_loss']:.3f} -> {r1['val_loss']:.3f}, acc {r0['test_acc']:.3f} -> {r1['test_acc']:.3f}")
    return {"data": kind, "descriptor": desc_name, "descriptor_text": desc_text, "dims": int(x_tr.shape[1]),
            "n": {s: int(len(splits[s][1])) for s in splits}, "feature_seconds": t_feat,
            "lr_raw_features_acc": acc_raw, "ae_train": {**tr, "seconds": t_train}, "runs": runs}


def _f(v, fmt="{:.3f}"):
    return "" if v is None else fmt.format(v)


NOTES = "<!-- notes: written by hand, kept when the script rewrites the tables above -->"


def write_markdown(result, path: Path, png_name: str):
    a = result["args"]
    lines = ["# PIC: pruning an autoencoder on LPQ / PHOG features by the angles between its hidden units", "",
             f"<!-- written by benchmarks/pic.py ({result['finished']}) -->", "",
             "    " + result["command"], "",
             f"Wall time {result['seconds']:.0f} s on the shared 2-core box (nice 19, TF 1 thread). Raw rows: "
             "`pic.json`; picture: " f"`{png_name}`.", "",
             "Setup: 48x48 gray crops with CLAHE (the expression CNN's preprocessing); features square-rooted and "
             "z-scored with train statistics, so a reconstruction loss of 1.0 is what predicting the mean gives. "
             f"Autoencoder: features -> Dense({a['hidden']}, tanh) -> Dense(features, linear), MSE, Adam "
             f"{a['lr']}, batch {a['batch']}, up to {a['epochs']} epochs with early stopping (patience "
             f"{a['patience']}) on the val split. Angles: between the hidden units' tanh output vectors over "
             "the training patterns (edgeface.optimize.distinctiveness). Pruning starts from the same "
             f"converged model for both rules; fine-tune after every round for up to {a['finetune_most_similar']} "
             f"epochs, stopped when the val loss has not improved for {a['finetune_patience']} epochs (best epoch kept). "
             "Accuracy: logistic regression (scikit-learn, C=1) on the standardised code of the train split, "
             "scored on the test split.", ""]
    for r in result["results"]:
        lines += [f"## {r['data']} / {r['descriptor'].upper()} ({r['descriptor_text'].rstrip(' =')}: {r['dims']:,} dims)", "",
                  f"train / val / test = {r['n']['train']} / {r['n']['val']} / {r['n']['test']}; "
                  f"logistic regression on the raw {r['dims']}-d features: **{r['lr_raw_features_acc']:.3f}**; "
                  f"autoencoder trained {r['ae_train']['epochs']} epochs ({r['ae_train']['seconds']:.0f} s).", ""]
        lines += ["| rule | round | hidden units | params | train loss | val loss | val loss right after surgery "
                  "| smallest angle | largest angle | merged | removed pairs | dead | test acc (LR on code) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for rule in ("thresholds", "most_similar"):
            rows = r["runs"][rule]["rows"]
            if rule == "most_similar":
                rows = [x for x in rows if x["units"] in TABLE_SIZES or x is rows[-1]]
            for x in rows:
                lines.append(f"| {rule} | {x['round']} | {x['units']} | {x['params']:,} | {x['train_loss']:.4f} | "
                             f"{x['val_loss']:.4f} | {_f(x.get('val_loss_after_surgery'), '{:.4f}')} | "
                             f"{_f(x['min_angle_deg'], '{:.1f}')} | {_f(x['max_angle_deg'], '{:.1f}')} | "
                             f"{x['merged']} | {x['removed_pairs']} | {x['dead']} | {x['test_acc']:.3f} |")
        lines += ["", f"Pruning wall time: thresholds {r['runs']['thresholds']['seconds']:.0f} s, most similar "
                  f"{r['runs']['most_similar']['seconds']:.0f} s (most-similar rows shown at selected sizes; every "
                  "round is in pic.json).", ""]
    keep = path.read_text().split(NOTES, 1)[1] if path.is_file() and NOTES in path.read_text() else "\n"
    path.write_text("\n".join(lines) + "\n" + NOTES + keep)


def plot(result, path: Path):
    from edgeface.utils.plots import pyplot, save_figure
    plt = pyplot()
    datasets = sorted({r["data"] for r in result["results"]}, key=lambda d: d != "ckplus48")
    fig, axes = plt.subplots(len(datasets), 3, figsize=(14, 4 * len(datasets)), squeeze=False)
    colors = {"lpq": "tab:blue", "phog": "tab:orange"}
    for i, d in enumerate(datasets):
        for r in (r for r in result["results"] if r["data"] == d):
            c = colors[r["descriptor"]]
            for rule, style, mk in (("most_similar", "-", None), ("thresholds", "none", "o")):
                rows = r["runs"][rule]["rows"]
                u = [x["units"] for x in rows]
                lab = f"{r['descriptor'].upper()} {rule.replace('_', ' ')}"
                axes[i, 0].plot(u, [x["val_loss"] for x in rows], linestyle=style, marker=mk, color=c, label=lab)
                axes[i, 1].plot(u, [x["min_angle_deg"] for x in rows], linestyle=style, marker=mk, color=c, label=lab)
                axes[i, 2].plot(u, [x["test_acc"] for x in rows], linestyle=style, marker=mk, color=c, label=lab)
            axes[i, 2].axhline(r["lr_raw_features_acc"], color=c, linestyle=":", label=f"{r['descriptor'].upper()} raw features")
        for j, (title, yl) in enumerate((("reconstruction loss (val)", "MSE (standardised)"),
                                         ("smallest angle between hidden units", "degrees"),
                                         ("expression accuracy, LR on the code (test)", "accuracy"))):
            ax = axes[i, j]
            ax.set_title(f"{d}: {title}", fontsize=10)
            ax.set_xlabel("hidden units")
            ax.set_ylabel(yl)
            ax.invert_xaxis()
            ax.grid(alpha=0.3)
        axes[i, 1].axhline(15, color="gray", linestyle="--", linewidth=0.8)
        axes[i, 2].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks")
    ap.add_argument("--data", nargs="+", default=["ckplus48", "fer2013"], choices=["ckplus48", "fer2013"])
    ap.add_argument("--descriptors", nargs="+", default=["lpq", "phog"], choices=["lpq", "phog"])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--finetune-thresholds", type=int, default=20, help="max fine-tune epochs per round")
    ap.add_argument("--finetune-most-similar", type=int, default=20, help="max fine-tune epochs per round")
    ap.add_argument("--finetune-patience", type=int, default=3, help="early stopping on val within a fine-tune")
    ap.add_argument("--min-units", type=int, default=2)
    ap.add_argument("--fer-train", type=int, default=3000, help="seeded subset of the FER2013 train split (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lpq-grid", type=int, default=1, help="LPQ cells per side (1: one histogram, 256 dims)")
    ap.add_argument("--phog-levels", type=int, default=2, help="PHOG pyramid levels 0..L (2: 168 dims)")
    ap.add_argument("--render", metavar="PIC_JSON", help="only rewrite pic.md and pic.png from an earlier pic.json")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        out = Path(args.out)
        plot(result, out / "pic.png")
        write_markdown(result, out / "pic.md", "pic.png")
        return
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    os.environ.setdefault("EDGEFACE_NO_PROGRESS", "1")
    root = shared_data()
    if root is None or not (root / "expressions").is_dir():
        raise SystemExit("needs ../shared/data/expressions (or EDGEFACE_DATA)")
    root = root / "expressions"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()

    def log(msg):
        print(f"[{time.time() - t_all:6.0f} s] {msg}", flush=True)

    results = []
    for kind in args.data:
        splits, classes, spec = load_split(kind, root, args.fer_train, args.seed)
        log(f"{kind}: {', '.join(f'{s} {len(v[1])}' for s, v in splits.items())} ({len(classes)} classes)")
        for d in args.descriptors:
            results.append({**run_one(kind, d, splits, args, log), "classes": classes, "split": spec})
    result = {"command": "nice -n 19 python benchmarks/pic.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "args": vars(args), "seconds": time.time() - t_all, "results": results,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "pic.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, out / "pic.png")
    write_markdown(result, out / "pic.md", "pic.png")
    log(f"wrote {out / 'pic.json'}, {out / 'pic.md'}, {out / 'pic.png'}")


if __name__ == "__main__":
    main()
