"""Stronger face embedders to distil from (`edgeface train face --teacher SPEC`).

    teacher = load_teacher("../shared/teachers/mobilefacenet-ncnn")   # ncnn MobileFaceNet (insightface)
    teacher = load_teacher("models/edgeface_face_float32.tflite")      # any edgeface .tflite embedder
    teacher = load_teacher("runs/face/model.keras")                     # a Keras embedder
    emb, emb_mirror = teacher_embeddings(teacher, paths, cache_file)    # computed once, cached

Every teacher takes aligned 112x112 RGB uint8 crops (ArcFace template) and returns
L2-normalised float32 embeddings.
"""
from edgeface.teachers.base import Teacher, load_teacher, teacher_embeddings

__all__ = ["Teacher", "load_teacher", "teacher_embeddings"]
