"""Command lines of the converters from public pose datasets to the posedual_tf TFRecord schema.

Run ``python -m tfrecords_tools.<tool> --help`` for each tool: ``coco``, ``detections``, ``aic``,
``mpii``, ``synthetic`` and ``inspect``. The converters themselves are :mod:`posedual_tf.conversion`;
the schema is :mod:`posedual_tf.data.records`.
"""
