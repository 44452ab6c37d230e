"""TF-free on-device runtime: numpy, OpenCV and a TFLite interpreter (ai-edge-litert first).

    interpreter   load/run .tflite files (int8 quantisation handled), model cards
    detector      MTCNN on the shipped assets/mtcnn_{pnet,rnet,onet}.tflite -> [Face]
    embedder      aligned crops -> L2-normalised embeddings (flip TTA), settings from the card
    pipeline      decode -> detect -> align -> embed -> match, timed per stage
    gallery       enrolled people in one .npz, locked + atomic writes, bound to the model sha256
    cli, stream   `edgeface verify | enroll | identify` (images, video files, cameras)
    bench_pipeline          throughput benchmark (TF-free)
    build_detector, compare_detectors   workstation tools: they import TensorFlow inside main()

Nothing here imports TensorFlow at import time (tests/test_runtime_cli.py proves it).
"""
