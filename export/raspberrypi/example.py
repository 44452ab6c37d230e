"""edgeface on a Raspberry Pi, from Python: compare two photos, or name faces from the camera.

    python example.py A.jpg B.jpg                     # cosine similarity of the two main faces
    python example.py --camera [--gallery g.npz]      # print who is in front of the camera (Ctrl-C stops)

Model: $EDGEFACE_MODEL or models/edgeface_face_int8.tflite (+ its .json card) in this folder.
Camera: Picamera2 when installed (CSI camera module), else OpenCV device 0 (USB webcam).
"""
import os
import sys
import time

import cv2

from edgeface.runtime.gallery import Gallery
from edgeface.runtime.pipeline import FacePipeline

MODEL = os.environ.get("EDGEFACE_MODEL", "models/edgeface_face_int8.tflite")


def frames():
    """RGB frames from the Pi camera module (Picamera2) or from a USB webcam (OpenCV)."""
    try:
        from picamera2 import Picamera2  # apt install python3-picamera2; venv made with --system-site-packages
        cam = Picamera2()
        # libcamera names formats by word order: "BGR888" arrays are laid out R, G, B.
        cam.configure(cam.create_preview_configuration(main={"size": (640, 480), "format": "BGR888"}))
        cam.start()
        while True:
            yield cam.capture_array()
    except ImportError:
        cap = cv2.VideoCapture(0)
        if not cap.isOpened():
            sys.exit("no camera: connect a USB webcam, or install python3-picamera2 for the camera module")
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main(argv):
    pipe = FacePipeline(MODEL, num_threads=4)  # a Pi 4/5 has four cores
    if argv and argv[0] == "--camera":
        gallery_path = argv[argv.index("--gallery") + 1] if "--gallery" in argv else "gallery.npz"
        gallery = Gallery.load(gallery_path, pipe.embedder.sha256) if os.path.exists(gallery_path) else None
        threshold = pipe.embedder.threshold or 0.5
        t0, n = time.perf_counter(), 0
        for rgb in frames():
            found = pipe.faces(rgb)
            names = [m.name for m in gallery.search([e for _, _, e in found], threshold=threshold)] if gallery and found else []
            n += 1
            print(f"{n / (time.perf_counter() - t0):5.1f} FPS  {len(found)} face(s)  {', '.join(names)}", flush=True)
        return 0
    if len(argv) != 2:
        print(__doc__)
        return 2
    (_, _, a), (_, _, b) = (pipe.main_face(pipe.read(p), name=p) for p in argv)
    score = float(a @ b)
    threshold = pipe.embedder.threshold
    verdict = "" if threshold is None else (" same person" if score >= threshold else " different people")
    print(f"cosine {score:.4f}{verdict}  (ms: {', '.join(f'{k} {v:.1f}' for k, v in pipe.times.medians().items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
