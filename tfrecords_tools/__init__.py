"""Converters from public pose datasets to the posedual_tf TFRecord schema.

Run ``python -m tfrecords_tools.<tool> --help`` for each tool: ``coco``, ``detections``, ``aic``,
``mpii``, ``synthetic`` and ``inspect``. The schema is documented in
:mod:`posedual_tf.data.records`.
"""
