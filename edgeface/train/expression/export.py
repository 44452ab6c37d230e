"""Export an expression run: its best float model -> TFLite files with model cards."""
from __future__ import annotations

import os
from pathlib import Path

import edgeface  # noqa: F401  (tf-keras before TensorFlow)


def convert_run(run_dir: str | os.PathLike, dtypes, out_dir: str | os.PathLike | None = None,
                name: str | None = None, model=None, budget: int | None = None,
                card_overrides: dict | None = None) -> list[dict]:
    """RUN_DIR's model -> OUT/NAME_{dtype}.tflite + cards (class names, preprocessing, split, calibration).

    Card fields come from the shared converter's reading of run.json; int8 is calibrated on the
    run's own training split so no val/test image shapes the quantisation ranges.
    """
    from edgeface.convert.source import load_source
    from edgeface.convert.tflite import convert_keras
    from edgeface.data.calibration import load_split_calibration

    run_dir = Path(run_dir)
    src = load_source(run_dir)
    info = src.run
    model = model if model is not None else src.model
    extra = src.card_extra()
    reps, calib = (None, None)
    if "int8" in dtypes:
        reps, calib = load_split_calibration(info, tuple(model.input_shape[1:]))
        extra["calibration"] = calib
    notes = dict(extra.get("notes") or {})
    notes.update({"preprocessing": info.get("preprocessing"), "data_split": info["data"]["split"],
                  "transfer": info.get("transfer")})
    extra["notes"] = notes
    extra.update(card_overrides or {})
    name = name or f"edgeface_{info['model']['name']}" + ("_pruned" if info.get("pruned_from") else "")
    return convert_keras(model, out_dir or run_dir / "tflite", name, dtypes, representative=reps,
                         card_extra=extra, budget=budget)
