"""TF-free on-device runtime: numpy, OpenCV and a TFLite interpreter (ai-edge-litert first)."""
