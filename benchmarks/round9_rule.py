"""Round 9's shipping rule (issue 15), fixed before the runs: does a candidate face file replace the shipped one?

    .venv/bin/python benchmarks/round9_rule.py DOMAIN_GAP.json SELECTION.json --shipped models/X_int8.tflite \
        --candidate runs/round9/TIER/models/X_int8.tflite --json VERDICT.json

Reads benchmarks/domain_gap.py's table (--held-out: faces no run trained on) and select_face_model.py's
(--val-identities students). The candidate ships only if all three hold:
  1. held-out real faces: the mean of its per-set cosines to the teacher rises by at least 0.02;
  2. all four sources (the three sets and the 13 CelebA people, each weighing the same): the mean cosine rises;
  3. the 13 CelebA people: pair accuracy falls by at most 1.0 point.
LFW is benched after the choice, as the report.
"""
import argparse
import json
import sys

from edgeface.errors import EdgefaceError, run_main

MIN_REAL_GAIN = 0.02       # rule 1: cosine
MAX_CELEBA_LOSS = 0.010    # rule 3: pair accuracy (1.0 point)
CELEBA = "celeba_13_held_out"
MEAN = "mean over sources"


def column(rows: list[dict], path: str) -> str:
    """domain_gap.py keys its columns by file stem, or by path when two files share a stem."""
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    for key in (path, stem):
        if key in rows[0]:
            return key
    raise EdgefaceError(f"{path} is not a column of the domain-gap table")


def verdict(gap: dict, sel: dict, shipped: str, candidate: str) -> dict:
    rows = gap["rows"]
    if gap.get("held_out") is None:
        raise EdgefaceError("the domain-gap table must be measured with --held-out (faces no run trained on)")
    s, c = column(rows, shipped), column(rows, candidate)
    real = [r for r in rows if r["source"] not in (CELEBA, MEAN)]
    both = next(r for r in rows if r["source"] == MEAN)
    if not real or not any(r["source"] == CELEBA for r in rows):
        raise EdgefaceError("the domain-gap table needs the CelebA row and at least one real-face set")
    acc = {r["model"]: r["val_pair_accuracy"] for r in sel["rows"]}
    if shipped not in acc or candidate not in acc:
        raise EdgefaceError("the selection table must list both files")
    real_gain = sum(r[c] - r[s] for r in real) / len(real)
    out = {"shipped": shipped, "candidate": candidate,
           "real_faces_cos_gain": real_gain, "all_sources_cos_gain": both[c] - both[s],
           "celeba_pair_acc_change": acc[candidate] - acc[shipped]}
    out["rules"] = {"1_real_faces_gain_ge_0.02": real_gain >= MIN_REAL_GAIN,
                    "2_all_sources_gain": out["all_sources_cos_gain"] > 0,
                    "3_celeba_pair_acc_loss_le_1pt": out["celeba_pair_acc_change"] >= -MAX_CELEBA_LOSS}
    out["ships"] = all(out["rules"].values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("domain_gap")
    ap.add_argument("selection")
    ap.add_argument("--shipped", required=True)
    ap.add_argument("--candidate", required=True)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from edgeface.utils.io import write_json_atomic

    tables = []
    for f in (a.domain_gap, a.selection):
        try:
            tables.append(json.load(open(f)))
        except (OSError, ValueError) as e:
            raise EdgefaceError(f"cannot read {f}: {e}") from None
    out = verdict(*tables, a.shipped, a.candidate)
    print(f"held-out real faces: cosine {out['real_faces_cos_gain']:+.4f}; all sources {out['all_sources_cos_gain']:+.4f}; "
          f"CelebA pair accuracy {100 * out['celeba_pair_acc_change']:+.2f} points")
    for rule, ok in out["rules"].items():
        print(f"  {rule}: {'pass' if ok else 'FAIL'}")
    print("ships" if out["ships"] else "does not ship")
    if a.json:
        write_json_atomic(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
