"""Face detection and five-point alignment.

`transform` is TF-free (numpy + OpenCV) and shared with the on-device runtime;
`detect` wraps the TensorFlow MTCNN used on workstations.
"""
