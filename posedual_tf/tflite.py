"""TFLite export of one network (or the PoseDual ensemble) with a MoveNet-style contract.

Contract of the ``.tflite`` file:
  * input ``crop``: ``uint8 [1, H, W, 3]``, RGB, the config's input size (``data.image_size`` W x H, e.g.
    192 x 256): one person cut out as the box of ``predict_image`` would be (aspect W:H, centred);
  * output ``keypoints``: ``float32 [1, 17, 3]``: per COCO-17 joint (nose, left eye, ..., right ankle)
    ``(y, x, score)``, y and x normalised to the crop (pixel / H, pixel / W, as MoveNet), the score the
    heatmap peak. Decoding (argmax and the reference's quarter-pixel shift) runs in the file.

Precisions: ``float32``; ``float16`` (weights stored as float16, about half the size); ``int8`` (the
network's weights and activations quantised, calibrated on people of the user's own TFRecords:
``calibration``; the decoding after the heatmaps stays float32: quantised with one scale, the pixel
coordinates and the scores of the output would share 256 levels). The file runs in ``ai_edge_litert``'s
interpreter (LiteRT, the maintained runtime for phones and edge boxes; ``pip install "posedual_tf[lite]"``)
and in ``tf.lite.Interpreter`` (deprecated, still part of TensorFlow 2.21): same file, same numbers.

Example:
    >>> import tensorflow as tf                                                                    # doctest: +SKIP
    >>> import posedual_tf                                                                         # doctest: +SKIP
    >>> from posedual_tf.tflite import export_tflite                                               # doctest: +SKIP
    >>> cfg = posedual_tf.load_config("demo_dual")                                                 # doctest: +SKIP
    >>> path = export_tflite(cfg, "runs/demo_dual/final", "runs/exported/tflite", precision="float16")   # doctest: +SKIP
    >>> interp = tf.lite.Interpreter(model_path=path); interp.allocate_tensors()                  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import tensorflow as tf

from posedual_tf import codec, files, geometry, joints
from posedual_tf.config import Config

PRECISIONS = ("float32", "float16", "int8")
#: name scope of the decoding ops (heatmaps -> keypoints) in the exported function
DECODE_SCOPE = "decode"


class TFLiteExportError(ValueError):
    """Settings a TFLite export cannot use (one line)."""


def keypoints_function(cfg: Config, nets, post_process: str = "shift"):
    """The exported computation: ``uint8 [1, H, W, 3]`` RGB crop -> ``[1, 17, 3]`` (y, x, score)."""
    heatmaps = codec.HeatmapCodec.from_config(cfg, post_process=post_process)
    inputs = codec.InputNormaliser.from_config(cfg.data)
    w, h = heatmaps.image_size
    coco_from_union = tf.constant(joints.COCO.to_union, tf.int32)
    center = tf.constant([[w / 2.0, h / 2.0]])
    scale = tf.constant([[w / geometry.PIXEL_STD, h / geometry.PIXEL_STD]])

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.uint8, name="crop")])
    def keypoints(crop):
        x = inputs.from_rgb(crop)
        hm = tf.add_n([tf.cast(n(x, training=False), tf.float32) for n in nets]) / float(len(nets))
        with tf.name_scope(DECODE_SCOPE):     # kept float32 by an int8 export (convert)
            coords, maxvals = heatmaps.decode(hm, center, scale, tf.zeros([1]))
            kp = tf.gather(tf.concat([coords, maxvals[..., None]], -1), coco_from_union, axis=1)
            yx = tf.stack([kp[..., 1] / float(h), kp[..., 0] / float(w)], axis=-1)
            return {"keypoints": tf.concat([yx, kp[..., 2:]], axis=-1)}

    return keypoints


def calibration_crops(cfg: Config, prefix: str, people: int):
    """Up to ``people`` uint8 RGB crops ``[1, H, W, 3]`` of the TFRecords at ``prefix`` (their GT boxes,
    cropped as evaluation crops them): the representative set of an int8 export."""
    from posedual_tf import cli
    from posedual_tf.data import pipeline, records
    from posedual_tf.data.settings import EvalDataSettings

    if people < 1:
        raise TFLiteExportError(f"--calibration-people {people}: expected at least 1 person to calibrate on")
    try:            # the flag's own words: the config field it stands in for is not the user's
        records.read_manifest(prefix)
    except FileNotFoundError:
        hint = f" (a prefix names no .json: {prefix[:-5]})" if prefix.endswith(".json") else ""
        raise TFLiteExportError(f"--calibration {prefix}: no converted dataset there ({records.manifest_path(prefix)} "
                                f"is missing){hint}; give the prefix of TFRecords written by tfrecords_tools, e.g. "
                                "your val records") from None
    except (OSError, ValueError) as e:
        raise TFLiteExportError(f"--calibration {prefix}: {cli.one_line(e)}") from None
    c = copy.deepcopy(cfg)
    c.data.val.records, c.test.use_gt_bbox = prefix, True
    try:
        ds, _ = pipeline.eval_dataset(EvalDataSettings.from_config(c), batch_size=1)
    except (OSError, ValueError) as e:
        raise TFLiteExportError(f"--calibration {prefix}: {str(e).splitlines()[0]}") from None
    inputs = codec.InputNormaliser.from_config(cfg.data)
    out = []
    for batch in ds.take(people):
        out.append(np.rint(inputs.to_unit_rgb(batch["image"].numpy()) * 255.0).astype(np.uint8))
    if not out:
        raise TFLiteExportError(f"--calibration {prefix}: holds no people to calibrate on")
    return out


def convert(fn, precision: str, calibration=None) -> bytes:
    """The ``.tflite`` bytes of the tf.function ``fn``, its variables frozen into constants first (handed
    the networks as trackable objects instead, the converter keeps READ_VARIABLE ops, which int8
    calibration cannot run).

    int8: calibrated on ``calibration`` (uint8 crops), then quantised except the ops under
    ``DECODE_SCOPE``, which stay float32 (TFLite's selective quantisation: the quantisation debugger's
    ``denylisted_nodes``). Quantised, the decoding loses the keypoints: the output concatenates pixel
    coordinates and scores, so one int8 scale of about 1/255 clips every coordinate below one pixel.
    """
    from absl import logging as absl_logging
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    level = absl_logging.get_verbosity()
    if level == absl_logging.WARNING:     # absl's default, untouched (a command's --verbose sets INFO)
        absl_logging.set_verbosity(absl_logging.ERROR)    # the converter's "consider providing trackable_obj"
    try:
        return _convert(fn, precision, calibration, convert_variables_to_constants_v2)
    finally:
        absl_logging.set_verbosity(level)


def _convert(fn, precision: str, calibration, convert_variables_to_constants_v2) -> bytes:
    """:func:`convert`, absl's warnings quieted."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(
        fn.get_concrete_function())])
    if precision == "float32":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    converter.representative_dataset = lambda: ([c] for c in calibration)
    with warnings.catch_warnings():           # the debugger's own tf.lite.Interpreter: its deprecation notice
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                             debug_dataset=converter.representative_dataset)
        calibrated = _interpreter(model_content=debugger.calibrated_model)
        decode = [t["name"] for t in calibrated.get_tensor_details() if t["name"].startswith(DECODE_SCOPE + "/")]
        if not decode:                        # a renamed scope would quantise the decoding again
            raise RuntimeError(f"int8 export: no op under {DECODE_SCOPE}/ in the calibrated model")
        outputs = [t["name"] for t in calibrated.get_output_details()]   # the last op, named by the signature
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=decode + outputs)
    return debugger.get_nondebug_quantized_model()


def export_tflite(cfg: Config, checkpoint: str, output: str, net: str = "best", precision: str = "float32",
                  calibration: str | None = None, people: int = 200, post_process: str = "shift",
                  say=print) -> str:
    """Write ``<output>/posedual_net<net>_<precision>.tflite`` (``output`` a folder of ours); returns its path.
    ``net``: ``best`` (the rule of :mod:`posedual_tf.best_net`), ``1``, ``2`` or ``ensemble``; ``say`` gets
    the lines naming the file and the network written (``print``; None for silence)."""
    from posedual_tf import best_net, checkpoints

    if precision not in PRECISIONS:
        raise TFLiteExportError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "int8" and not calibration:
        raise TFLiteExportError("--precision int8: needs --calibration PREFIX, TFRecords of people like those it "
                                "will see (e.g. your val records), to set the int8 ranges")
    if post_process not in ("shift", "none"):
        raise TFLiteExportError(f"--post-process {post_process}: the TFLite file decodes with shift or none")
    crops = calibration_crops(cfg, calibration, people) if precision == "int8" else None
    chosen, net, why = checkpoints.exported_networks(cfg, checkpoint, net)
    data = convert(keypoints_function(cfg, chosen, post_process), precision, crops)
    with files.writing(output, "export", setting="--output"):
        path = files.own(output, f"posedual_net{net}_{precision}.tflite")
        files.write_atomic(path, data)            # a plain open(): the umask's mode, readable by others
    if say is not None:
        for line in [f"TFLite ({precision}): {files.shown_path(path)}"] + best_net.describe(net, why):
            say(line)
    return path


def _interpreter(**kwargs):
    """LiteRT's interpreter when ``ai_edge_litert`` is installed, else TensorFlow's (deprecated, same
    kernels and numbers): ``model_path=`` or ``model_content=``, ``num_threads=``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter(**kwargs)


def interpreter(path: str, threads: int | None = None):
    """A ready interpreter (tensors allocated) of the ``.tflite`` file at ``path``."""
    interp = _interpreter(model_path=path, num_threads=threads)
    interp.allocate_tensors()
    return interp


def run_tflite(path: str, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
    """``[N, 17, 3]`` keypoints of uint8 crops ``[N, H, W, 3]`` through the ``.tflite`` file, one at a time."""
    return run_interpreter(interpreter(path, threads), crops)


def run_interpreter(interp, crops: np.ndarray) -> np.ndarray:
    """:func:`run_tflite` with an interpreter already made (:func:`interpreter`)."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    result = []
    for crop in crops:
        interp.set_tensor(inp["index"], crop[None].astype(np.uint8))
        interp.invoke()
        result.append(interp.get_tensor(out["index"])[0])
    return np.stack(result)
