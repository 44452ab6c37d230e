"""Artifact size: file bytes, gzip bytes (what an OTA update ships), parameter count, budget fit.

TF-free and interpreter-free: the parameter count comes from the model card when it records one,
else from the .tflite flatbuffer itself (constant tensors = tensors backed by a non-empty buffer),
read with the few lines of flatbuffer decoding below.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import check_tflite_file, load_card
from edgeface.spec import ModelCard


class _Table:
    """One flatbuffer table: field lookup through its vtable."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, i: int) -> int | None:
        o = 4 + 2 * i
        if o >= self.vsize:
            return None
        off = struct.unpack_from("<H", self.buf, self.vtable + o)[0]
        return self.pos + off if off else None

    def scalar(self, i: int, fmt: str, default=0):
        p = self._field(i)
        return default if p is None else struct.unpack_from("<" + fmt, self.buf, p)[0]

    def _vector(self, i: int) -> tuple[int, int]:
        p = self._field(i)
        if p is None:
            return 0, 0
        start = p + struct.unpack_from("<I", self.buf, p)[0]
        return start + 4, struct.unpack_from("<I", self.buf, start)[0]

    def table(self, i: int) -> "_Table | None":
        p = self._field(i)
        return None if p is None else _Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0])

    def vector_len(self, i: int) -> int:
        return self._vector(i)[1]

    def ints(self, i: int) -> list[int]:
        start, n = self._vector(i)
        return list(struct.unpack_from(f"<{n}i", self.buf, start)) if n else []

    def tables(self, i: int) -> list["_Table"]:
        start, n = self._vector(i)
        out = []
        for k in range(n):
            p = start + 4 * k
            out.append(_Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0]))
        return out


_INDEX_TYPES = {2, 4}  # TensorType INT32, INT64


def _quantized(tensor: _Table) -> bool:
    q = tensor.table(4)
    return q is not None and q.vector_len(2) > 0  # QuantizationParameters{2 scale}


def count_params(data: bytes) -> int:
    """Elements of the constant weight tensors (float, fp16 or quantised) the operators read.

    Counted per operator input, not per buffer: the converter stores identical constants once
    (e.g. the all-zero biases of an untrained model end up as one shared tensor), but each use is
    still a parameter of the network. int32/int64 constants count only when quantised (int8
    models' biases); unquantised ones are axis/shape operands. Schema (tflite/schema.fbs):
    Model{2 subgraphs, 4 buffers}; SubGraph{0 tensors, 3 operators}; Operator{1 inputs};
    Tensor{0 shape, 1 type, 2 buffer, 4 quantization}; Buffer{0 data, 2 size}.
    """
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        buffers = model.tables(4)
        total = 0
        for sg in model.tables(2):
            tensors = sg.tables(0)
            sizes: dict[int, int] = {}
            for k, t in enumerate(tensors):
                b = t.scalar(2, "I")
                if b == 0 or b >= len(buffers):
                    continue
                # data inline, or (models > 2 GB) stored after the flatbuffer at offset/size
                if buffers[b].vector_len(0) == 0 and buffers[b].scalar(2, "Q") == 0:
                    continue
                if t.scalar(1, "b") in _INDEX_TYPES and not _quantized(t):
                    continue  # axis / shape operands (Mean axes, Reshape shape), not learned weights
                n = 1
                for d in t.ints(0):
                    n *= max(d, 1)
                sizes[k] = n
            for op in sg.tables(3):
                total += sum(sizes.get(i, 0) for i in op.ints(1))
        return total
    except (struct.error, IndexError) as e:
        raise EdgefaceError(f"cannot read the .tflite flatbuffer: {e}") from None


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def card_budget(card: ModelCard | None, default: int | None = None) -> int | None:
    """The card's budget_bytes, else `default` (a baseline's)."""
    return card.budget_bytes if card and card.budget_bytes is not None else default


def size_report(model_path: str | os.PathLike, baseline_budget: int | None = None) -> dict:
    """bytes, gzip_bytes, params (+ where it came from), budget and whether the file fits it."""
    path = Path(model_path)
    data = check_tflite_file(path)
    card = load_card(path)
    params, params_from = card and card.extra.get("params"), "card"
    if not isinstance(params, int):
        params, params_from = count_params(data), "flatbuffer"
    budget = card_budget(card, baseline_budget)
    rep = {"bytes": len(data), "gzip_bytes": gzip_size(data), "params": int(params), "params_from": params_from,
           "budget": budget, "budget_ok": None if budget is None else len(data) <= budget}
    if card and card.bytes is not None and card.bytes != len(data):
        rep["card_bytes_mismatch"] = card.bytes  # a stale card: the artifact changed after conversion
    return rep
