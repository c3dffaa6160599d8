"""Datasets (TFDS builders), vocabulary and the tf.data input pipeline."""
