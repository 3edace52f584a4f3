"""A real photo of a person, shipped with the package, to predict on before bringing your own images.

``IMAGE`` is COCO val2017 image 785 (CC BY 2.0; ATTRIBUTION.md in this folder names its source and
licence), ``BOXES`` the person box of COCO's annotation, ``KEYPOINTS`` its 17 annotated keypoints
(x, y, visibility; COCO order), ``BOXES_FILE`` the box as ``python -m posedual_tf.predict --boxes`` reads it
(``--sample`` uses both).

Example:
    >>> from posedual_tf import samples
    >>> import os
    >>> os.path.basename(samples.IMAGE), samples.BOXES
    ('coco_000000000785.jpg', [[280.79, 44.73, 218.7, 346.68]])
"""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
#: The photo (640 x 425 JPEG).
IMAGE = os.path.join(_HERE, "coco_000000000785.jpg")
#: Its boxes by file name, the format of ``python -m posedual_tf.predict --boxes``.
BOXES_FILE = os.path.join(_HERE, "coco_000000000785.boxes.json")
#: Where the photo and its annotation come from, and their licences.
ATTRIBUTION = os.path.join(_HERE, "ATTRIBUTION.md")
#: The person's box (x, y, w, h) from COCO annotation 442619.
BOXES = [[280.79, 44.73, 218.7, 346.68]]
#: That annotation's keypoints (x, y, visibility), COCO-17 order.
KEYPOINTS = [[367, 81, 2], [374, 73, 2], [360, 75, 2], [386, 78, 2], [356, 81, 2], [399, 108, 2], [358, 129, 2],
             [433, 142, 2], [341, 159, 2], [449, 165, 2], [309, 178, 2], [424, 203, 2], [393, 214, 2],
             [429, 294, 2], [367, 273, 2], [466, 362, 2], [396, 341, 2]]
