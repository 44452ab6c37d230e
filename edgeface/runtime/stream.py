"""`edgeface identify --camera N | --video FILE`: name faces frame by frame, draw them, report FPS.

Headless OpenCV (opencv-python-headless) has no windows: frames go to --output, and --show is
honoured only when the build can open one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import click
import cv2
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.gallery import UNKNOWN

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def open_capture(source) -> cv2.VideoCapture:
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).is_file():
            raise EdgefaceError(f"video not found: {source}")
        cap = cv2.VideoCapture(str(source))
        what = f"video {source}"
    else:
        # OpenCV logs each backend it tries as a WARN line; the one error line below says it all.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            cap = cv2.VideoCapture(int(source))
        finally:
            cv2.utils.logging.setLogLevel(level)
        what = f"camera {source}"
    if not cap.isOpened():
        raise EdgefaceError(f"cannot open {what} (for a Pi camera module see export/raspberrypi/README.md)")
    return cap


def draw(bgr: np.ndarray, face, match) -> None:
    known = match.name != UNKNOWN
    color = (60, 200, 60) if known else (40, 40, 220)
    x, y, w, h = (int(round(v)) for v in face.box)
    cv2.rectangle(bgr, (x, y), (x + w, y + h), color, 2)
    label = f"{match.name} {match.score:.2f}"
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    ty = max(th + base, y)
    cv2.rectangle(bgr, (x, ty - th - base), (x + tw + 2, ty), color, -1)
    cv2.putText(bgr, label, (x + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


class VideoOut:
    """A VideoWriter to a temporary name with the same extension, renamed over `path` on success."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        ext = path.suffix.lower()
        if ext not in FOURCC:
            raise EdgefaceError(f"unsupported output video type {ext or '(none)'}: use one of {', '.join(FOURCC)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{ext}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*FOURCC[ext]), fps, size)
        if not self.writer.isOpened():
            raise EdgefaceError(f"cannot write video {path} (codec {FOURCC[ext]} unavailable in this OpenCV)")

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)

    def close(self, ok: bool) -> None:
        self.writer.release()
        if ok:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


def stream_frames(pipe, source, output: Path | None, max_frames: int | None, show: bool, on_frame) -> dict:
    """The frame loop every stream command shares: read each frame of a video file or camera, call
    `on_frame(bgr, index)` (it analyses, prints and draws into `bgr`, and returns the labels it saw),
    write the drawn frame to `output` (renamed into place only when the loop ends cleanly), show it
    with --show, and stop at max_frames, the end of the file, or Ctrl-C. Returns the counts and the
    median frame time, wall and CPU (the CPU figure is what one idle core would do)."""
    from edgeface.utils.native import quiet_native_stderr

    with quiet_native_stderr():  # FFmpeg logs its own lines for a damaged file; the error below says it in one
        cap = open_capture(source)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps_in = fps_in if 1.0 <= fps_in <= 240.0 else 25.0
    out, window, frames, faces, seen, frame_ms, frame_cpu_ms = None, show, 0, 0, {}, [], []
    ok = False
    t0 = time.perf_counter()
    try:
        try:
            while max_frames is None or frames < max_frames:
                f0, c0 = time.perf_counter(), time.process_time()
                with pipe.times.stage("decode"):
                    got, bgr = cap.read()
                if not got:
                    break
                labels = on_frame(bgr, frames)
                for name in labels:
                    seen[name] = seen.get(name, 0) + 1
                faces += len(labels)
                frames += 1
                if output is not None:
                    if out is None:
                        out = VideoOut(output, fps_in, (bgr.shape[1], bgr.shape[0]))
                    out.write(bgr)
                frame_ms.append((time.perf_counter() - f0) * 1000.0)
                frame_cpu_ms.append((time.process_time() - c0) * 1000.0)
                if window:
                    window = show_frame(bgr)
        except KeyboardInterrupt:  # Ctrl-C is how a camera run ends: keep the video and report
            click.echo("edgeface: stopped (Ctrl-C)", err=True)
        ok = True
    finally:
        cap.release()
        if out is not None:
            out.close(ok)
    wall = time.perf_counter() - t0
    if frames == 0:
        raise EdgefaceError(f"no frames could be read from {source}")
    med_ms, med_cpu = float(np.median(frame_ms)), float(np.median(frame_cpu_ms))
    return {"frames": frames, "seconds": wall, "fps": frames / wall, "median_frame_ms": med_ms,
            "median_fps": 1000.0 / med_ms if med_ms > 0 else None, "median_frame_cpu_ms": med_cpu,
            "median_fps_cpu": 1000.0 / med_cpu if med_cpu > 0 else None, "faces": faces, "seen": seen,
            "median_ms": pipe.times.medians(), "output": str(output) if output else None}


def stream_summary_line(summary: dict, nobody: str) -> str:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["median_ms"].items())
    seen = ", ".join(f"{n} x{c}" for n, c in sorted(summary["seen"].items(), key=lambda kv: -kv[1])) or nobody
    return (f"{summary['frames']} frames in {summary['seconds']:.1f} s: {summary['fps']:.1f} FPS (median frame "
            f"{summary['median_frame_ms']:.1f} ms = {summary['median_fps']:.1f} frames/s; CPU "
            f"{summary['median_frame_cpu_ms']:.1f} ms = {summary['median_fps_cpu']:.1f} frames/s); "
            f"{summary['faces']} faces ({seen}); median ms per stage: {stages}"
            + (f"; wrote {summary['output']}" if summary["output"] else ""))


def run_stream(pipe, gallery, source, top_k: int, threshold: float, output: Path | None,
               max_frames: int | None, show: bool) -> dict:
    """`identify` on a stream: name every face of every frame."""
    def on_frame(bgr, _index):
        found = pipe.faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        matches = pipe.match(np.stack([e for _, _, e in found]), gallery, top_k, threshold) if found else []
        for (face, _, _), m in zip(found, matches):
            draw(bgr, face, m)
        return [m.name for m in matches]

    summary = stream_frames(pipe, source, output, max_frames, show, on_frame)
    summary["names"] = summary["seen"]
    click.echo(stream_summary_line(summary, "nobody"))
    return summary


def show_frame(bgr: np.ndarray) -> bool:
    """Show a frame if this OpenCV has a GUI; False (stop trying) when it does not or 'q' is pressed."""
    try:
        cv2.imshow("edgeface", bgr)
        return (cv2.waitKey(1) & 0xFF) != ord("q")
    except cv2.error:
        click.echo("edgeface: note: this OpenCV build has no GUI (headless); use --output to save frames", err=True)
        return False
