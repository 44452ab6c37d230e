"""edgeface: face images to a verified, sub-1 MB face model for phones, Raspberry Pi and MCUs.

Importing the package never imports TensorFlow (the on-device runtime must work without it),
but it pins TF to the legacy tf-keras before anything else can import TensorFlow: TF-MOT 0.8.1
only works with tf-keras, so users never have to set this themselves.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ INFO/WARNING chatter out of CLI output

__version__ = "0.1.0"
