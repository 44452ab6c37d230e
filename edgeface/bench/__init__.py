"""Benchmarks of .tflite artifacts: size, latency, LFW verification, expression accuracy, size checks."""
