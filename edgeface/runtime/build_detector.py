"""Build step (needs TensorFlow): the mtcnn package's P/R/O-Net weights -> small .tflite files.

    python -m edgeface.runtime.build_detector [--dtype float16|float32] [--out DIR]

Writes mtcnn_{pnet,rnet,onet}.tflite and mtcnn.json (provenance) into edgeface/runtime/assets/,
the files the TF-free `edgeface.runtime.detector.Detector` loads on devices. The networks are the
package's own Keras classes with its own weights, so the in-graph Permute (Caffe's column-major
flatten) and the softmax heads are kept exactly; only the cascade around them is re-implemented.
P-Net keeps a resizable input [1, None, None, 3] (one resize per pyramid scale); R-Net and O-Net
have a resizable batch [None, 24|48, 24|48, 3].
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

ASSETS = Path(__file__).resolve().parent / "assets"
NETS = {  # name -> (mtcnn module, class, weights file, input spec without batch)
    "pnet": ("mtcnn.network.pnet", "PNet", "pnet.lz4", (None, None, 3)),
    "rnet": ("mtcnn.network.rnet", "RNet", "rnet.lz4", (24, 24, 3)),
    "onet": ("mtcnn.network.onet", "ONet", "onet.lz4", (48, 48, 3)),
}


def load_keras_net(name: str):
    """The mtcnn package's network `name`, built and loaded with the package's weights."""
    import importlib

    import edgeface  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
    from mtcnn.utils.tensorflow import load_weights

    module, cls, weights, _ = NETS[name]
    net = getattr(importlib.import_module(module), cls)()
    net.build()
    net.set_weights(load_weights(weights))
    return net


def convert_net(name: str, dtype: str = "float16") -> bytes:
    import tensorflow as tf

    net = load_keras_net(name)
    spec = NETS[name][3]
    batch = 1 if name == "pnet" else None  # P-Net: one image per pyramid scale
    fn = tf.function(lambda x: net(x), input_signature=[tf.TensorSpec([batch, *spec], tf.float32, name="image")])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], net)
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif dtype != "float32":
        raise ValueError(f"dtype must be float16 or float32, got {dtype}")
    return conv.convert()


def weights_sha256(name: str) -> str:
    import importlib.resources

    from edgeface.utils.io import sha256_file

    return sha256_file(importlib.resources.files("mtcnn.assets.weights") / NETS[name][2])


@click.command()
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Weight storage type (float16 halves the files; the interpreter computes in float32).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=ASSETS, show_default=True)
def main(dtype: str, out_dir: Path) -> None:
    """Convert the mtcnn package's P/R/O-Net to .tflite for the TF-free detector."""
    import importlib.metadata

    import edgeface  # noqa: F401
    import tensorflow as tf

    from edgeface.utils.io import sha256_file, write_bytes_atomic, write_json_atomic

    info = {"source": "mtcnn package (MIT, Ivan de Paz Centeno), original MTCNN weights (Zhang et al. 2016)",
            "mtcnn_version": importlib.metadata.version("mtcnn"), "tensorflow_version": tf.__version__,
            "dtype": dtype, "normalization": {"mean": 127.5, "std": 128.0}, "color": "RGB", "nets": {}}
    for name in NETS:
        data = convert_net(name, dtype)
        path = write_bytes_atomic(out_dir / f"mtcnn_{name}.tflite", data)
        info["nets"][name] = {"file": path.name, "bytes": len(data), "sha256": sha256_file(path),
                              "weights_sha256": weights_sha256(name)}
        click.echo(f"{path}: {len(data) / 1024:.1f} KiB")
    write_json_atomic(out_dir / "mtcnn.json", info)


if __name__ == "__main__":
    sys.exit(main())
