"""The Projector's files for a model with one embedding shared by both
languages (a whole run with two is checked in tests/job/test_trained_run.py)."""

import numpy as np
from support.models import small_config


def test_a_shared_embedding_is_written_once_with_its_pieces(task, tmp_path):
    import keras
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    from keras_tfm import build_transformer
    from keras_tfm.job.projector import write_embeddings

    *_, src_tok, _ = task
    vocab = src_tok.vocab_size
    config = small_config(
        src_vocab_size=vocab, tgt_vocab_size=vocab, share_embeddings=True
    )
    model = build_transformer(config)
    folder = write_embeddings(tmp_path / "logs", model, src_tok, src_tok)
    assert folder == tmp_path / "logs" / "projector"
    projector = text_format.Parse(
        (folder / "projector_config.pbtxt").read_text(),
        projector_config_pb2.ProjectorConfig(),
    )
    assert [e.tensor_name for e in projector.embeddings] == [
        "shared_embedding/.ATTRIBUTES/VARIABLE_VALUE"
    ]
    matrix = tf.train.load_checkpoint(str(folder)).get_tensor(
        projector.embeddings[0].tensor_name
    )
    np.testing.assert_array_equal(
        matrix, keras.ops.convert_to_numpy(model.source_embedding.embeddings)
    )
    labels = (folder / "shared_embedding.tsv").read_text("utf-8").splitlines()
    assert len(labels) == src_tok.vocab_size == matrix.shape[0]
    assert labels[0] == "<pad>"
    # Written again (a resumed run's end): replaced, nothing left beside it.
    write_embeddings(tmp_path / "logs", model, src_tok, src_tok)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["projector"]
