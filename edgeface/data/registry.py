"""The data-set registry: public face sets pinned to one commit of one GitHub repository. TF-free.

Each entry names the repository, the commit, the one path inside it, what the files are, the terms
they come with and how many files to expect (per class where the set has classes), so
`edgeface data get NAME DEST` reproduces exactly the files edgeface was trained on. The counts were
checked on the extracted files (benchmarks/data_sets.md).

A JSON file of extra entries (`--registry FILE`, a list of objects with the DataSet fields) adds a
user's own sets; `url` there may be any git URL (a local path or file:// works).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

from edgeface.errors import EdgefaceError
from edgeface.utils.io import read_input_file

# FER2013's PrivateTest split is the held-back test set: nothing in edgeface may ever read it.
FORBIDDEN_PARTS = ("privatetest",)


def forbidden_part(path: str) -> str | None:
    """The forbidden marker `path` contains (case-insensitive), or None."""
    low = path.lower()
    return next((p for p in FORBIDDEN_PARTS if p in low), None)


@dataclass(frozen=True)
class DataSet:
    name: str
    repo: str                 # GitHub owner/name
    commit: str               # 40 hex digits: later commits may hold only LFS pointers
    path: str                 # the one folder extracted, relative to the repository root
    files: int                # expected number of files under `path`
    what: str                 # what the files are
    terms: str                # licence / terms of use, as the data's authors state them
    classes: dict[str, int] = field(default_factory=dict)  # files per first-level folder, if the set has classes
    url: str | None = None    # clone URL [default: https://github.com/<repo>.git]

    def __post_init__(self):
        bad = forbidden_part(self.path)
        if bad:
            raise EdgefaceError(f"data set {self.name!r}: path {self.path!r} contains {bad!r}, "
                                "which edgeface never extracts (FER2013's PrivateTest is held back)")
        if len(self.commit) != 40 or any(c not in "0123456789abcdef" for c in self.commit):
            raise EdgefaceError(f"data set {self.name!r}: commit must be 40 lower-case hex digits, got {self.commit!r}")
        if not self.path.endswith("/") or self.path.startswith("/") or ".." in self.path.split("/"):
            raise EdgefaceError(f"data set {self.name!r}: path must be a relative folder ending in '/', "
                                f"got {self.path!r}")
        if self.classes and sum(self.classes.values()) != self.files:
            raise EdgefaceError(f"data set {self.name!r}: per-class counts sum to {sum(self.classes.values())}, "
                                f"not {self.files}")

    @property
    def clone_url(self) -> str:
        return self.url or f"https://github.com/{self.repo}.git"

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


_RESEARCH = "research and non-commercial use only, as its authors state; not redistributed by edgeface"
_UNSTATED = ("released for research; no licence file in this repository: check the authors' terms before any "
             "other use; not redistributed by edgeface")

REGISTRY: dict[str, DataSet] = {d.name: d for d in [
    DataSet(
        name="utkface", repo="delonyohan/deeplearn-agepred", commit="b06607bf2477c8295b33facb5dea7aada27cac01",
        path="dataset/UTKFace/", files=23708,
        what="UTKFace aligned & cropped faces, 200x200 JPEG, file name age_gender_race_date; ~20k people, no ids; "
             "390 exact duplicates",
        terms=f"UTKFace (Zhang, Song, Qi 2017): {_RESEARCH} (the repository's MIT licence covers its code, not "
              "these images). Later commits of this repository hold only Git LFS "
              "pointers: keep the pin."),
    DataSet(
        name="all_age_faces", repo="middleyuan/All-Age-Faces-Dataset",
        commit="28741a75e2efb7a2f96e13d4beb58411536f473d", path="All-Age-Faces Dataset/aglined faces/", files=13322,
        what="All-Age-Faces (AAF) aligned faces (the folder is spelled 'aglined'), 309 px wide, ~390 high JPEG, one image per person, "
             "Asian faces aged 2-80; 196 exact duplicates",
        terms=f"All-Age-Faces (Cheng et al. 2019): {_UNSTATED}."),
    DataSet(
        name="scut_fbp5500", repo="qijialiv-cell/SCUT-FBP5500-Beauty-Score",
        commit="aab5287e5b4055575fc2417e442d0c0dd953a83e", path="SCUT-FBP5500_v2/Images/", files=5500,
        what="SCUT-FBP5500 v2 frontal face photos, 350x350 JPEG, one per person (AF/AM/CF/CM prefixes: "
             "Asian/Caucasian female/male); not aligned: needs detection",
        terms=f"SCUT-FBP5500 (Liang et al. 2018): {_RESEARCH}."),
    DataSet(
        name="fer2013_train", repo="darkbit404/FaceExp", commit="9d0b7b81c7335d20576326daa70d1a7cc7b0c42f",
        path="data/train/", files=28709,
        classes={"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830,
                 "surprise": 3171},
        what="FER2013 official Training split, data/train/<class>/Training_*.jpg, 48x48 grayscale, 7 classes. "
             "1,236 exact duplicates, and 351 files byte-identical to PublicTest images (remove them: "
             "`edgeface data dedupe --held-out PUBLICTEST`). The repository's data/test (PublicTest and PrivateTest) "
             "is never extracted.",
        terms=f"FER2013 (Goodfellow et al. 2013, ICML 2013 workshop challenge): {_UNSTATED}."),
]}


def load_registry(extra: str | os.PathLike | None = None) -> dict[str, DataSet]:
    """The built-in registry, plus (overriding by name) the entries of a JSON file."""
    reg = dict(REGISTRY)
    if extra is None:
        return reg
    try:
        entries = json.loads(read_input_file(extra, "registry file"))
    except ValueError as e:
        raise EdgefaceError(f"registry file {extra} is not valid JSON: {e}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise EdgefaceError(f"registry file {extra} must hold a JSON list of objects")
    known = {f.name for f in fields(DataSet)}
    for e in entries:
        unknown = sorted(set(e) - known)
        missing = sorted(f.name for f in fields(DataSet) if f.name not in e and f.name not in ("classes", "url"))
        if unknown or missing:
            raise EdgefaceError(f"registry file {extra}: entry {e.get('name', '?')!r} has "
                                + (f"unknown fields {unknown}" if unknown else f"no {missing}"))
        reg[e["name"]] = DataSet(**e)
    return reg


def get_dataset(name: str, registry: dict[str, DataSet] | None = None) -> DataSet:
    reg = REGISTRY if registry is None else registry
    if name not in reg:
        raise EdgefaceError(f"unknown data set {name!r}: known are {', '.join(sorted(reg))} (edgeface data list)")
    return reg[name]

