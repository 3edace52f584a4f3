"""posedual_tf: semi-supervised 2D human pose estimation (PoseDual / PoseCons) in TensorFlow/Keras."""
import os as _os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
