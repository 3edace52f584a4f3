"""posedual_tf: semi-supervised 2D human pose estimation (PoseDual / PoseCons) in TensorFlow/Keras."""
# Importing the package changes no global state (the command lines quiet TensorFlow's start-up
# lines themselves: posedual_tf.cli.quiet_tensorflow).

__version__ = "0.1.0"
