"""Keras -> TFLite (float32 / float16 / int8 / dynamic) with model cards, and a TFLite Micro C array.

    from edgeface.convert import convert_keras
    cards = convert_keras(model, "models", "face_mnv2", representative=calib_images, card_extra={...})
"""
from edgeface.convert.tflite import DTYPES, convert_keras

__all__ = ["DTYPES", "convert_keras"]
