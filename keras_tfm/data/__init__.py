"""Parallel text files, `tf.data` input pipelines and the numbers task."""
