"""The trained embeddings for TensorBoard's Projector, labelled with their
subword pieces."""

import shutil
from pathlib import Path


def embedding_tables(model, src_tokenizer, tgt_tokenizer):
    """`[(name, matrix, pieces)]`: one table per embedding of `model`, the
    shared one once (`[model] share_embeddings`)."""
    import keras

    source, target = model.source_embedding, model.target_embedding
    to_numpy = keras.ops.convert_to_numpy
    if source is target:
        return [("shared_embedding", to_numpy(source.embeddings), src_tokenizer)]
    return [
        ("source_embedding", to_numpy(source.embeddings), src_tokenizer),
        ("target_embedding", to_numpy(target.embeddings), tgt_tokenizer),
    ]


def write_embeddings(log_dir, model, src_tokenizer, tgt_tokenizer):
    """Writes `log_dir/projector/`: the embedding matrices (a TensorFlow
    checkpoint), one `NAME.tsv` of pieces per matrix (line i labels row i)
    and the `projector_config.pbtxt` that pairs them. The folder is built
    beside its place and renamed into it, replacing an older one."""
    import tensorflow as tf
    from tensorboard.plugins import projector

    folder = Path(log_dir) / "projector"
    building = folder.with_name(".projector.tmp")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    config = projector.ProjectorConfig()
    variables = {}
    for name, matrix, tokenizer in embedding_tables(
        model, src_tokenizer, tgt_tokenizer
    ):
        variables[name] = tf.Variable(matrix.astype("float32"), name=name)
        # The Projector reads one label per line: no tab or line break may
        # split a piece.
        labels = [
            piece.replace("\t", "\\t").replace("\n", "\\n")
            for piece in tokenizer.pieces()
        ]
        (building / f"{name}.tsv").write_text(
            "".join(f"{label}\n" for label in labels), encoding="utf-8"
        )
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = f"{name}.tsv"
    tf.train.Checkpoint(**variables).save(str(building / "embeddings.ckpt"))
    projector.visualize_embeddings(str(building), config)
    # TensorBoard lists a folder as a run only once it holds an event file.
    tf.summary.create_file_writer(str(building)).close()
    shutil.rmtree(folder, ignore_errors=True)
    building.rename(folder)
    return folder
