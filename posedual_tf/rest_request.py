"""Write the JSON body of a TF Serving REST request to an exported SavedModel's ``predict_images``.

    python -m posedual_tf.rest_request (--sample | --image FILE --boxes BOXES.json) \\
        [--layout instances|inputs] --output REQUEST.json

then ``curl -d @REQUEST.json http://localhost:8501/v1/models/NAME:predict`` (docs/serving.md: how to get
and start the server). ``--boxes`` is predict's format keyed by file name (``{"a.jpg": [[x, y, w, h], ...]}``).

TF Serving's REST API takes the images as ``{"b64": ...}`` (base64 of the JPEG or PNG file) and the boxes as
numbers, in one of two layouts: ``instances`` (a row per image, every row the same number of boxes: shorter
rows are padded with ``[0, 0, 0, 0]``, a box without area, whose ``valid`` comes back false) or ``inputs``
(a column per input name). The response holds ``keypoints [B, N, 17, 3]`` (x, y, score in image pixels,
COCO order), ``scores [B, N]`` and ``valid [B, N]``.

Example:
    >>> from posedual_tf import rest_request, samples
    >>> body = rest_request.body([open(samples.IMAGE, "rb").read()], [samples.BOXES])
    >>> body["signature_name"], sorted(body["instances"][0]), body["instances"][0]["boxes"]
    ('predict_images', ['boxes', 'image_bytes'], [[280.79, 44.73, 218.7, 346.68]])
"""
from __future__ import annotations

import base64
import json
import os

#: The batched signature of posedual_tf.export's SavedModel.
SIGNATURE = "predict_images"
LAYOUTS = ("instances", "inputs")


def body(images: list[bytes], boxes: list[list[list[float]]], layout: str = "instances") -> dict:
    """The request body for encoded ``images`` and their ``boxes`` (one list per image), padded to the
    longest list with ``[0, 0, 0, 0]``."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    if len(images) != len(boxes):
        raise ValueError(f"boxes: {len(boxes)} lists for {len(images)} images")
    longest = max((len(b) for b in boxes), default=0)
    padded = [[[float(v) for v in box] for box in b] + [[0.0] * 4] * (longest - len(b)) for b in boxes]
    encoded = [{"b64": base64.b64encode(bytes(data)).decode("ascii")} for data in images]
    if layout == "instances":
        return {"signature_name": SIGNATURE,
                "instances": [{"image_bytes": e, "boxes": b} for e, b in zip(encoded, padded)]}
    return {"signature_name": SIGNATURE, "inputs": {"image_bytes": encoded, "boxes": padded}}


def main(argv):
    del argv
    from absl import flags

    from posedual_tf import cli, files, inference
    from posedual_tf import predict as predict_cli

    f = flags.FLAGS
    cli.required("output")
    if f.sample == bool(f.image):
        raise cli.UsageError("give --sample or --image FILE (with --boxes BOXES.json)")
    if f.sample:
        from posedual_tf import samples

        image, boxes_file = samples.IMAGE, samples.BOXES_FILE
    else:
        cli.required("boxes", hint="predict's format: {\"a.jpg\": [[x, y, w, h], ...]}")
        image, boxes_file = f.image, f.boxes
    if not os.path.isfile(image):
        raise inference.PredictError(f"--image {image}: no such file")
    name = os.path.basename(image)
    people = predict_cli.load_boxes(boxes_file, 0.0, predict_cli.image_ids([image])).get(name, [])
    if os.path.lexists(f.output):
        raise inference.PredictError(f"--output {f.output}: already exists; nothing was written (choose a new file)")
    data = inference.load_image(image).data
    request = body([data], [[b for b, _ in people]], f.layout)
    files.write_atomic(f.output, json.dumps(request))
    print(f"request: {files.shown_path(f.output)}: 1 image, {len(people)} boxes ({f.layout})\n"
          f"  curl -d @{files.shown_path(f.output)} \\\n"
          "    http://localhost:8501/v1/models/NAME:predict")


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    from absl import flags

    from posedual_tf import cli

    flags.DEFINE_bool("sample", False, "the photo shipped with the package and its person's box")
    flags.DEFINE_string("image", None, "an image file (JPEG or PNG)")
    flags.DEFINE_string("boxes", None, "--image: its boxes, {\"FILE NAME\": [[x, y, w, h], ...]}")
    flags.DEFINE_enum("layout", "instances", list(LAYOUTS), "TF Serving's row (instances) or columnar (inputs) "
                                                             "layout")
    flags.DEFINE_string("output", None, "the request file to write (a new file)")
    flags.adopt_module_key_flags(cli)
    cli.only_when("boxes", lambda: bool(flags.FLAGS.image), "only with --image (--sample has its box)")


if __name__ == "__main__":
    from posedual_tf import cli

    cli.run(main, define_flags)
