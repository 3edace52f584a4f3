"""Export a trained network as a SavedModel for serving.

    python -m posedual_tf.export --config NAME --checkpoint CKPT --output DIR [--version N] \\
        [--net 1|2|ensemble] [--flip-test] [--post-process shift|dark|none]

``--version N`` writes TF Serving's layout (``DIR/N/``); the folders are readable by other users.
``--format tflite --precision float32|float16|int8 [--calibration PREFIX]`` writes a ``.tflite`` into
``DIR`` instead (contract: :mod:`posedual_tf.tflite`).

Signatures:
  * ``serving_default``: ``crops [N, H, W, 3]`` float32 RGB 0-255 -> ``heatmaps [N, h, w, 24]`` and
    ``keypoints [N, 24, 3]`` (crop pixel x, y, score).
  * ``predict_image``: ``image_bytes`` (scalar string, JPEG/PNG) and ``boxes [N, 4]`` float32
    (x, y, w, h) -> ``keypoints [N, 17, 3]`` (image x, y, score, COCO order), ``scores [N]``
    (mean joint score above test.in_vis_thre, as the reference rescoring without a box score) and
    ``valid [N]``: boxes are cut to the image; one outside the image or without area is not valid
    and gets zero keypoints and score. Non-finite boxes are an error.
    Cropping, normalisation, network, flip test, decoding and the union -> COCO mapping all run
    in the graph.
  * ``predict_images``: the same for a batch, as TF Serving's REST API batches its ``instances``:
    ``image_bytes [B]`` and ``boxes [B, N, 4]`` (every image the same N: pad with ``[0, 0, 0, 0]``,
    a box without area, whose ``valid`` is false) -> ``keypoints [B, N, 17, 3]``, ``scores [B, N]``,
    ``valid [B, N]``. A request example: docs/serving.md.

Which network is written: ``--net best`` (the default) follows :mod:`posedual_tf.best_net`.
"""
from __future__ import annotations

import os

from posedual_tf import cli

if __name__ == "__main__":
    cli.quiet_tensorflow()       # before the imports below print TensorFlow's start-up lines

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from posedual_tf import best_net, checkpoints, codec, files, geometry, joints  # noqa: E402
from posedual_tf.config import Config
from posedual_tf.data import records


def _heatmaps(nets, images, heatmaps: codec.HeatmapCodec):
    """One network's heatmaps, or the mean over both PoseDual networks (the ensemble)."""
    return tf.add_n([heatmaps.network_heatmaps(n, images) for n in nets]) / float(len(nets))


def clip_boxes(boxes, width, height):
    """Boxes ``[N, 4]`` (x, y, w, h) cut to the image ``[0, width] x [0, height]`` (boxes inside it are
    unchanged), and whether each keeps an area: one outside the image or without area is not valid."""
    x, y, w, h = tf.unstack(boxes, axis=-1)
    x1, y1 = tf.clip_by_value(x, 0.0, width), tf.clip_by_value(y, 0.0, height)
    x2, y2 = tf.clip_by_value(x + w, 0.0, width), tf.clip_by_value(y + h, 0.0, height)
    valid = (x2 > x1) & (y2 > y1)
    return tf.stack([x1, y1, tf.maximum(x2 - x1, 1.0), tf.maximum(y2 - y1, 1.0)], axis=-1), valid


def cut_people(img, boxes, size: tuple[int, int]):
    """The crops ``[N, H, W, 3]`` (float32) of ``boxes`` (cut to the image: :func:`clip_boxes`) from the
    float32 image ``img [H, W, 3]`` at the network's input ``size`` (W, H), as evaluation cuts them, and
    their centres, scales and output-to-image matrices ``[N, 2, 3]``: the one crop of the SavedModel's
    ``predict_image`` and of :func:`posedual_tf.predict` with a ``.tflite`` file."""
    w, h = size
    n = tf.shape(boxes)[0]
    center, scale = geometry.tf_box_to_center_scale(boxes, w / h)
    inv = geometry.tf_affine_matrix(center, scale, tf.zeros([n]), (w, h), inverse=True)
    return geometry.tf_warp(tf.tile(img[None], [n, 1, 1, 1]), inv, (w, h)), center, scale, inv


def serving_functions(cfg: Config, nets, flip_test: bool, post_process: str):
    """The exported functions, in the order of :data:`SIGNATURES` (plain tf.functions, also usable without
    saving)."""
    heatmaps = codec.HeatmapCodec.from_config(cfg, flip_test=flip_test, post_process=post_process)
    inputs = codec.InputNormaliser.from_config(cfg.data)
    w_in, h_in = heatmaps.image_size
    coco_from_union = tf.constant(joints.COCO.to_union, tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, h_in, w_in, 3], tf.float32, name="crops")])
    def serve_crops(crops):
        hm = _heatmaps(nets, inputs.from_rgb(crops), heatmaps)
        n = tf.shape(crops)[0]
        center = tf.tile(tf.constant([[w_in / 2.0, h_in / 2.0]]), [n, 1])
        scale = tf.tile(tf.constant([[w_in / geometry.PIXEL_STD, h_in / geometry.PIXEL_STD]]), [n, 1])
        coords, maxvals = heatmaps.decode(hm, center, scale, tf.zeros([n]))
        return {"heatmaps": hm, "keypoints": tf.concat([coords, maxvals[..., None]], -1)}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None, 4], tf.float32, name="boxes")])
    def predict_image(image_bytes, boxes):
        img = tf.cast(records.decode_image(image_bytes), tf.float32)
        boxes = tf.debugging.assert_all_finite(boxes, "boxes must be finite numbers")
        size = tf.cast(tf.shape(img)[:2], tf.float32)
        boxes, valid = clip_boxes(boxes, size[1], size[0])
        n = tf.shape(boxes)[0]

        def people():
            crops, center, scale, _ = cut_people(img, boxes, (w_in, h_in))
            hm = _heatmaps(nets, inputs.from_rgb(crops), heatmaps)
            coords, maxvals = heatmaps.decode(hm, center, scale, tf.zeros([n]))
            kps = tf.gather(tf.concat([coords, maxvals[..., None]], -1), coco_from_union, axis=1)
            vis = tf.cast(kps[..., 2] > cfg.test.in_vis_thre, tf.float32)
            scores = tf.math.divide_no_nan(tf.reduce_sum(kps[..., 2] * vis, -1), tf.reduce_sum(vis, -1))
            keep = tf.cast(valid, tf.float32)
            return kps * keep[:, None, None], scores * keep

        def nobody():
            return tf.zeros([0, joints.COCO.num_joints, 3]), tf.zeros([0])

        kps, scores = tf.cond(n > 0, people, nobody)
        return {"keypoints": kps, "scores": scores, "valid": valid}

    k = joints.COCO.num_joints

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None, None, 4], tf.float32, name="boxes")])
    def predict_images(image_bytes, boxes):
        return tf.map_fn(lambda pair: predict_image(pair[0], pair[1]), (image_bytes, boxes),
                         fn_output_signature={"keypoints": tf.TensorSpec([None, k, 3], tf.float32),
                                              "scores": tf.TensorSpec([None], tf.float32),
                                              "valid": tf.TensorSpec([None], tf.bool)})

    return serve_crops, predict_image, predict_images


#: The SavedModel's signatures, in the order :func:`serving_functions` returns their functions.
SIGNATURES = ("serving_default", "predict_image", "predict_images")
#: Written into every export: marks a folder as ours, so that ``--overwrite`` may replace it.
MARKER = "posedual_export.json"


class ExportError(ValueError):
    """An output folder that export must not write into (one line)."""


def check_output(output: str, overwrite: bool) -> None:
    """Refuse an output that exists, unless it is a previous export of ours and ``overwrite`` is set:
    export never deletes or replaces what it did not write."""
    if not os.path.lexists(output):
        return
    if not (os.path.isdir(output) and not os.path.islink(output) and os.path.isfile(os.path.join(output, MARKER))):
        raise ExportError(f"--output {output}: already exists and is not a SavedModel written by posedual_tf.export; "
                          "nothing was written (choose a new folder)")
    if not overwrite:
        raise ExportError(f"--output {output}: holds a previous export; pass --overwrite to replace it")


def export(cfg: Config, checkpoint: str, output: str, net: str = "best", flip_test: bool | None = None,
           post_process: str | None = None, overwrite: bool = False, version: int | None = None,
           say=print) -> str:
    """Build the networks, load ``checkpoint`` and write the SavedModel to ``output``: into a temporary
    folder beside it, renamed when complete, readable by other users (folders 0755 and files 0644 under
    the usual umask). An existing ``output`` is replaced only if it is a previous export (see
    :func:`check_output`). ``version``: TF Serving's layout, the SavedModel in ``output/<version>/``
    (``output`` is then the model's base path, holding its versions). ``net``: ``best`` (the rule of
    :mod:`posedual_tf.best_net`), ``1``, ``2`` or ``ensemble``; ``say`` gets the lines naming the folder and
    the network written (``print``; None for silence). Returns the SavedModel folder."""
    output = os.path.normpath(output)
    if version is not None:
        if version < 1:
            raise ExportError(f"--version {version}: expected a positive int (TF Serving serves the highest)")
        with files.writing(output, "export", setting="--output"):      # one export into a base path at a time
            return _export(cfg, checkpoint, files.own(output, str(version)), net, flip_test, post_process, overwrite,
                           say)
    parent = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--output {output}: cannot write in {parent} ({e.strerror})") from None
    with files.lock(output, "export", beside=True):      # the folder is swapped in whole: its lock lies beside it
        return _export(cfg, checkpoint, output, net, flip_test, post_process, overwrite, say)


def _export(cfg: Config, checkpoint: str, output: str, net: str, flip_test: bool | None, post_process: str | None,
            overwrite: bool, say) -> str:
    """:func:`export` into ``output``, its lock held."""
    check_output(output, overwrite)

    chosen, net, why = checkpoints.exported_networks(cfg, checkpoint, net)
    flip = cfg.test.flip_test if flip_test is None else flip_test
    functions = serving_functions(cfg, chosen, flip, post_process or cfg.test.post_process)
    archive = keras.export.ExportArchive()
    for n in chosen:
        archive.track(n)
    for name, fn in zip(SIGNATURES, functions):
        archive.add_endpoint(name, fn)
    def fill(tmp):
        archive.write_out(tmp, verbose=False)
        files.write_json_atomic(os.path.join(tmp, MARKER), {
            "config": cfg.name, "checkpoint": os.path.abspath(checkpoint), "net": net, "why": why, "flip_test": flip,
            "post_process": post_process or cfg.test.post_process})

    def is_ours(path):
        check_output(path, overwrite)     # one line unless a previous export and --overwrite
        return True

    try:
        files.replace_folder(output, fill, is_ours)
    except OSError as e:
        raise ExportError(f"--output {output}: writing the SavedModel failed ({e.strerror or e})") from None
    if say is not None:
        for line in [f"SavedModel: {files.shown_path(output)}"] + best_net.describe(net, why):
            say(line)
    return output


def main(argv):
    del argv
    from absl import flags

    f = flags.FLAGS
    cfg = cli.load_config()
    cli.required("checkpoint", "output")
    if f.format == "tflite":
        from posedual_tf import tflite

        tflite.export_tflite(cfg, f.checkpoint, f.output, f.net, f.precision, f.calibration,
                             f["calibration-people"].value, f["post-process"].value or "shift")
        w, h = cfg.data.image_size
        print(f"  in: uint8 RGB crop [1, {h}, {w}, 3]; out: keypoints [1, 17, 3]\n"
              "  (y, x normalised to the crop, score), COCO-17 order")
        return
    export(cfg, f.checkpoint, f.output, f.net, f["flip-test"].value, f["post-process"].value,
           overwrite=f.overwrite, version=f.version)
    print(f"  signatures: {', '.join(SIGNATURES)}")
    if f.version is not None:
        print(f"TF Serving (docs/serving.md):\n  tensorflow_model_server --rest_api_port=8501 \\\n"
              f"    --model_name={os.path.basename(os.path.normpath(f.output))} \\\n"
              f"    --model_base_path={os.path.abspath(f.output)}")


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    from absl import flags

    cli.define_config_flags()
    flags.DEFINE_string("checkpoint", None, "training workdir, weights folder or .pth file")
    flags.DEFINE_string("output", None, "SavedModel folder to write")
    flags.DEFINE_enum("net", "best", list(best_net.CHOICES), "which network to export: best (the better network "
                      "at the run's last validation, from train_result.json), 1, 2 or ensemble (PoseDual)")
    flags.DEFINE_bool("flip-test", None, "flip test in the graph (default: test.flip_test)")
    flags.DEFINE_enum("post-process", None, ["shift", "dark", "none"], "decoding refinement (default: test.post_process)")
    flags.DEFINE_bool("overwrite", False, "replace --output if it holds a previous export (never anything else)")
    flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "tflite"],
                      "savedmodel (TF Serving, predict) or tflite (phones, edge boxes: posedual_tf/tflite.py)")
    flags.DEFINE_enum("precision", "float32", ["float32", "float16", "int8"], "--format tflite: the file's precision")
    flags.DEFINE_string("calibration", None, "--format tflite --precision int8: TFRecords prefix of people to "
                                             "calibrate the int8 ranges on (e.g. your val records)")
    flags.DEFINE_integer("calibration-people", 200, "--calibration: how many people to use", lower_bound=1)
    flags.DEFINE_integer("version", None, "TF Serving's layout: write the SavedModel to --output/VERSION/ "
                                          "(--output is the model's base path; TF Serving serves the highest)",
                         lower_bound=1)
    flags.adopt_module_key_flags(cli)
    f = flags.FLAGS
    saved_model = lambda: f.format == "savedmodel"  # noqa: E731
    for name, what in (("version", "TF Serving's layout"), ("flip-test", "the flip test in the graph"),
                       ("overwrite", "replacing a previous SavedModel")):
        cli.only_when(name, saved_model, f"{what}: only with --format savedmodel", example=("--format=tflite",))
    cli.only_when("precision", lambda: f.format == "tflite", "only with --format tflite (a SavedModel is float32)")
    cli.only_when("calibration", lambda: f.format == "tflite" and f.precision == "int8",
                  "only with --format tflite --precision int8 (float32 and float16 need no calibration)",
                  example=("--format=tflite", "--precision=float16"))
    cli.only_when("calibration-people", lambda: bool(f.calibration), "only with --calibration")


if __name__ == "__main__":
    cli.run(main, define_flags)
