"""Parallel text and its `tf.data` input pipelines.

text_files      reading, checking and listing line-aligned files
options         `BatchingOptions`, how pairs become batches
batching        `make_dataset`: pairs in memory as padded batches
streaming       `stream_dataset`: the same batches, read line by line
numbers_task    the built-in German->English numbers task
"""
