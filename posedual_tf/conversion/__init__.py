"""Public pose datasets -> the posedual_tf TFRecord schema (:mod:`posedual_tf.data.records`).

One module per source: :mod:`~posedual_tf.conversion.coco` (COCO-format keypoints, custom sets included),
:mod:`~posedual_tf.conversion.detections` (images + detected boxes), :mod:`~posedual_tf.conversion.aic`,
:mod:`~posedual_tf.conversion.mpii`, and :mod:`~posedual_tf.conversion.synthetic` (the demo's people);
:mod:`~posedual_tf.conversion.writer` writes the shards and the manifest for all of them. Their command
lines are ``python -m tfrecords_tools.<tool>``.

Example (a converter from Python; ``coco.convert`` returns the manifest):
    >>> from posedual_tf.conversion import coco, synthetic
    >>> _ = synthetic.generate("people", 2, seed=0, split="val", size=(96, 72))
    >>> manifest = coco.convert("people/val.json", "people/val", "records/val", workers=1)
    >>> manifest["num_images"], manifest["num_instances"] > 0
    (2, True)
"""
