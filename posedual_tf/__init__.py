"""posedual_tf: semi-supervised 2D human pose estimation (PoseDual / PoseCons) in TensorFlow/Keras.

The Python API (:mod:`posedual_tf.api`) is available here: ``load_config``, ``prepare_demo_data``, ``fit``,
``evaluate_checkpoint``, ``export_saved_model``, ``export_tflite``, ``predict``, ``predict_image``,
``build_networks``; the classes a run is made of: ``Config``, ``PoseTask``, ``HeatmapCodec``,
``InputNormaliser``; predict's results ``ImagePoses`` and ``Person``; and ``samples``, a photo to try.

Example:
    >>> import posedual_tf
    >>> posedual_tf.load_config("coco1k_dual").method.name
    'dual'
    >>> posedual_tf.HeatmapCodec((192, 256), (48, 64)).stride
    (4.0, 4.0)
"""
# Importing the package changes no global state and imports no TensorFlow: the names below load their
# module on first use (the command lines quiet TensorFlow's start-up lines before importing it:
# posedual_tf.cli.quiet_tensorflow).

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "posedual_tf.api", "prepare_demo_data": "posedual_tf.api", "fit": "posedual_tf.api",
    "evaluate_checkpoint": "posedual_tf.api", "export_saved_model": "posedual_tf.api", "predict_image": "posedual_tf.api",
    "build_networks": "posedual_tf.api", "export_tflite": "posedual_tf.api",
    # the command's module, callable as the API's predict (posedual_tf/predict.py: _CallableModule)
    "predict": "posedual_tf.predict", "samples": "posedual_tf.samples",
    "ImagePoses": "posedual_tf.inference", "Person": "posedual_tf.inference",
    "Config": "posedual_tf.config", "ConfigError": "posedual_tf.config",
    "PoseTask": "posedual_tf.task",
    "HeatmapCodec": "posedual_tf.codec", "InputNormaliser": "posedual_tf.codec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'posedual_tf' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_EXPORTS[name])
    return module if _EXPORTS[name] == f"{__name__}.{name}" else getattr(module, name)


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
