"""Capacity at the same bytes (issue 15): the round-9 MobileNetV2 student with its strides moved later.

    .venv/bin/python benchmarks/student_variants.py [--init runs/recovered/mnv2_r9/model.keras \
        --faces cache/celeba/arcface112 --teacher ../shared/teachers/mobilefacenet-ncnn]

Moving a stride keeps every weight's shape (the 7x7 map before the GDConv head is unchanged), so each
variant has the same parameters and int8 bytes and can warm-start from the shipped student
(`--set model.stages=...` with `train.init`); only the feature maps, and the multiply-accumulates, grow.
With --init, each variant gets that model's weights as they are and is scored by its mean cosine to the
teacher on the 313 crops of the 13 held-out CelebA people (flip TTA): how much of the function survives
the move, i.e. where a warm-started fine-tune would start. No LFW.
"""
import argparse

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.nets.mobilenetv2 import count_macs, estimate_int8_bytes, mobilenetv2

VARIANTS = {
    "round 9 student": [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [4, 128, 2, 1]],
    "64 and 96 stages at 14x14": [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 1], [6, 96, 3, 1], [4, 128, 2, 2]],
    "every stage one stride later": [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [4, 128, 2, 2]],
}


def held_out_cosine(model, x, ref) -> float:
    """Mean cosine of `model`'s flip-TTA embeddings of the normalised faces `x` to the teacher's `ref`."""
    import numpy as np

    e = model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)  # flip TTA
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return float(np.mean(np.sum(e * ref, axis=1)))


def held_out_faces(faces: str, teacher: str) -> tuple["np.ndarray", "np.ndarray"]:
    """(normalised pixels, the teacher's flip-TTA embeddings) of the 313 crops of the 13 CelebA people no
    student trained on, loaded once for every model scored on them."""
    from edgeface.data.hygiene import CELEBA_STUDENT_VAL, LFW_PEOPLE_IN_CELEBA
    from edgeface.data.pipeline import load_images
    from edgeface.optimize.compress import load_faces_split
    from edgeface.runtime.interpreter import l2_normalize
    from edgeface.spec import PIXEL_MEAN, PIXEL_STD, normalize_pixels
    from edgeface.teachers.base import load_teacher, teacher_embeddings

    _, val, _ = load_faces_split(faces, (112, 112, 3), PIXEL_MEAN, PIXEL_STD, exclude=LFW_PEOPLE_IN_CELEBA,
                                 as_paths=True, val_identities=CELEBA_STUDENT_VAL)
    paths = [str(p) for p in val]
    t, tm = teacher_embeddings(load_teacher(teacher), paths, None)
    return normalize_pixels(load_images(paths, 112)), l2_normalize(t + tm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", help="a trained model.keras of the round-9 student's shapes")
    ap.add_argument("--faces", default="cache/celeba/arcface112")
    ap.add_argument("--teacher", default="../shared/teachers/mobilefacenet-ncnn")
    a = ap.parse_args()
    weights = ref = x = None
    if a.init:
        from edgeface.nets.io import load_model

        weights = load_model(a.init).get_weights()
        x, ref = held_out_faces(a.faces, a.teacher)
    print("| variant | stages (t, c, n, s) | params | M MACs | est. int8 bytes | head input |"
          + (" cosine to teacher, warm-started |" if a.init else ""))
    print("|---|---|---:|---:|---:|---|" + ("---:|" if a.init else ""))
    for name, stages in VARIANTS.items():
        m = mobilenetv2(input_size=112, alpha=0.75, stages=stages, last_channels=512, embedding_dim=128)
        h, w = m.get_layer("head_gdconv").input.shape[1:3]
        cos = ""
        if weights is not None:
            m.set_weights(weights)
            cos = f" {held_out_cosine(m, x, ref):.4f} |"
        print(f"| {name} | {stages} | {m.count_params():,} | {count_macs(m) / 1e6:.1f} | "
              f"{estimate_int8_bytes(m):,} | {h}x{w} |{cos}")


if __name__ == "__main__":
    main()
