"""The training job behind `keras-tfm`: run configs, run directories, the
stages of `keras-tfm train`, finished runs, evaluation and attention maps."""
