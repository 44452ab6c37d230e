"""Hostile inputs built from real files, shared by tests/test_bad_inputs.py and benchmarks/bad_inputs.py.

Everything starts from a real LFW photo or a shipped model and damages it the way phones, disks,
downloads and users do: EXIF rotation, trailers after the end marker, zeroed sectors, truncation,
bit flips, huge declared dimensions, malformed model cards and galleries.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "edgeface_face_int8.tflite"
# one person with several photos, and another person
PERSON = "Colin_Powell"
OTHER = "George_W_Bush"


def lfw_photo(lfw_root: Path, name: str = PERSON, n: int = 1) -> Path:
    return Path(lfw_root) / name / f"{name}_{n:04d}.jpg"


# ---- photos ------------------------------------------------------------------------------------
def exif_app1(orientation: int) -> bytes:
    """A minimal EXIF APP1 segment holding only the Orientation tag (what phones write)."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def exif_rotated_jpeg(src: Path, dst: Path) -> Path:
    """The photo as a phone held sideways stores it: pixels rotated 90 degrees clockwise plus
    orientation 8 ("rotate 90 counter-clockwise to display"), so a viewer shows it upright."""
    rot = cv2.rotate(cv2.imread(str(src)), cv2.ROTATE_90_CLOCKWISE)
    data = cv2.imencode(".jpg", rot, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    dst.write_bytes(data[:2] + exif_app1(8) + data[2:])
    return dst


def appended_jpeg(src: Path, dst: Path, extra: bytes = b"\x00" * 4000 + b"SAMSUNG trailer") -> Path:
    """A complete JPEG with bytes after its end marker (camera trailers, concatenated uploads)."""
    dst.write_bytes(Path(src).read_bytes() + extra)
    return dst


def zeroed_jpeg(src: Path, dst: Path, size: int = 2048) -> Path:
    """2 KB zeroed in the middle of the entropy-coded data (a bad sector, a broken download)."""
    data = bytearray(Path(src).read_bytes())
    mid = len(data) // 2
    data[mid:mid + size] = b"\x00" * size
    dst.write_bytes(bytes(data))
    return dst


def truncated(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    dst.write_bytes(data[:int(len(data) * fraction)])
    return dst


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(dst: Path, side: int = 30000) -> Path:
    """A valid greyscale PNG of side x side pixels that is under a megabyte on disk (all zeros)."""
    row = b"\x00" * (side + 1)  # filter byte + pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    dst.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                    + _png_chunk(b"IEND", b""))
    return dst


# ---- models ------------------------------------------------------------------------------------
def copy_model(dst_dir: Path, name: str = "face.tflite", card: dict | None | str = "shipped") -> Path:
    """The shipped int8 embedder (and its card, or `card`, or none) under dst_dir."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    m = dst_dir / name
    m.write_bytes(SHIPPED.read_bytes())
    if card == "shipped":
        m.with_suffix(".json").write_bytes(SHIPPED.with_suffix(".json").read_bytes())
    elif card is not None:
        m.with_suffix(".json").write_text(card if isinstance(card, str) else json.dumps(card))
    return m


def damaged_model(dst: Path, how: str) -> Path:
    data = SHIPPED.read_bytes()
    if how == "half":
        out = data[:len(data) // 2]
    elif how == "4k":
        out = data[:4096]
    elif how == "bitflip":  # flip bits all over the flatbuffer's tables and offsets
        b, rng = bytearray(data), random.Random(0)
        for _ in range(2000):
            b[rng.randrange(16, len(b))] ^= 0xFF
        out = bytes(b)
    elif how == "empty":
        out = b""
    elif how == "text":
        out = b"this is not a model\n"
    else:
        raise ValueError(how)
    dst.write_bytes(out)
    return dst


def shipped_card() -> dict:
    return json.loads(SHIPPED.with_suffix(".json").read_text())


def card_with(path: str, value) -> dict:
    """The shipped card with one dotted field set to `value`."""
    card = shipped_card()
    *parents, last = path.split(".")
    node = card
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return card


# (case id, card JSON text or object, the field the error must name)
BAD_CARDS = [
    ("list", "[1, 2, 3]", "JSON object"),
    ("string", '"a string"', "JSON object"),
    ("not_json", "{oops", "not valid JSON"),
    ("threshold_abc", card_with("verification.threshold", "abc"), "verification.threshold"),
    ("threshold_nan", card_with("verification.threshold", float("nan")), "verification.threshold"),
    ("task_unknown", card_with("task", "cat_detector"), "'task'"),
    ("shape_short", card_with("input.shape", [112, 112]), "input.shape"),
    ("mean_text", card_with("input.normalization.mean", "x"), "input.normalization.mean"),
    ("std_zero", card_with("input.normalization.std", 0), "input.normalization.std"),
    ("verification_list", card_with("verification", [0.3]), "'verification'"),
    ("op_threshold_missing", card_with("verification.operating_points", {"far_1e-3": {"tar": 0.6}}),
     "verification.operating_points.far_1e-3.threshold"),
    ("op_far_text", card_with("verification.operating_points", {"far_1e-3": {"threshold": 0.3, "far": "low"}}),
     "verification.operating_points.far_1e-3.far"),
]


# ---- galleries ---------------------------------------------------------------------------------
def nan_gallery(dst: Path, model: Path) -> Path:
    """A well-formed gallery file whose embeddings are NaN (a broken model enrolled them)."""
    from edgeface.runtime.gallery import Gallery
    from edgeface.utils.io import sha256_file

    g = Gallery(dst, sha256_file(model), "face", 128)
    g.names = ["alice"]
    g.embeddings = np.full((1, 128), np.nan, np.float32)
    g.labels = np.zeros(1, np.int32)
    g.sources = ["a.jpg"]
    dst.write_bytes(g.to_bytes())
    return dst


# ---- running and observing -------------------------------------------------------------------
def cli_env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "EDGEFACE_NO_PROGRESS": "1"}
    env.pop("EDGEFACE_MODEL", None)
    env.pop("EDGEFACE_GALLERY", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr


def run_cli(args, cwd: Path, timeout: float = 300, env: dict | None = None) -> Outcome:
    r = subprocess.run([sys.executable, "-m", "edgeface", *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout, env=env or cli_env())
    return Outcome(r.returncode, r.stdout, r.stderr)


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (symlinks as 'link:target')."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def changed_files(before: dict, after: dict) -> list[str]:
    """Files added, removed or modified between two snapshots."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
