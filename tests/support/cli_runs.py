"""`keras-tfm` commands in child processes, and reading what a training
run printed and saved."""

import re
import subprocess
import sys

from support.processes import child_env

# The tiny config (tests/configs/tiny.toml): d_model 32, warmup 20,
# learning-rate scale 1, max_length 24, 4 epochs.
D_MODEL, WARMUP, MAX_LENGTH, EPOCHS = 32, 20, 24, 4

# TensorFlow's C++ runtime writes these before its logging is set up,
# whatever TF_CPP_MIN_LOG_LEVEL says; everything else on stderr is ours.
RUNTIME_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} )")


def tiny_config_text(training=""):
    """The tiny config's text with `training` (TOML lines) added to its
    `[training]` section, without sample translations or attention images
    (which these runs do not look at, and which take a child's time)."""
    from support.paths import TINY

    text = TINY.read_text().replace("[training]", f"[training]\n{training}", 1)
    return text.replace("samples = 2", "samples = 0\nattention_images = 0")


def cli(*args):
    """The command line of `keras-tfm train ARGS...` in this Python."""
    return [sys.executable, "-m", "keras_tfm.cli", "train", *map(str, args)]


def run_cli(*args, timeout=240):
    """Runs `keras-tfm train ARGS...` in a child process; its result."""
    return subprocess.run(
        cli(*args), env=child_env(), capture_output=True, text=True, timeout=timeout
    )


def our_stderr_lines(stderr):
    """The lines of a child's stderr that keras_tfm wrote (not TensorFlow's
    start-up noise)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not RUNTIME_NOISE.match(line)
    ]


def parse_epochs(stdout):
    """`{epoch: {"steps": n, name: value}}` from fit's verbose=2 lines."""
    epochs, current = {}, None
    for line in stdout.splitlines():
        header = re.fullmatch(r"Epoch (\d+)/(\d+)", line.strip())
        if header:
            current = int(header.group(1))
            continue
        progress = re.match(r"(\d+)/(\d+) - ", line)
        if progress and current is not None:
            values = {"steps": int(progress.group(2))}
            for name, value in re.findall(r" - (\w+): ([-+\w.]+)", line):
                values[name] = float(value)
            epochs[current] = values
    return epochs


def epoch_headers(stdout):
    """fit's `Epoch N/M` lines."""
    return [
        line.strip()
        for line in stdout.splitlines()
        if re.fullmatch(r"Epoch \d+/\d+", line.strip())
    ]


def split_lengths(run_dir, split):
    """`(target lengths, kept)` of a split's pairs by the run's own
    tokenizers (with the end token); `kept`: both sides fit `max_length`."""
    import tensorflow as tf

    from keras_tfm.text.tokenizer import Tokenizer

    lengths = []
    for side, language in (("src", "de"), ("tgt", "en")):
        tokenizer = Tokenizer.load(run_dir / "tokenizers" / f"{side}.model")
        lines = (run_dir / "data" / f"{split}.{language}").read_text("utf-8")
        pieces = tokenizer.tokenize(tf.constant(lines.splitlines()))
        lengths.append(pieces.row_lengths().numpy() + 1)
    src_len, tgt_len = lengths
    return tgt_len, (src_len <= MAX_LENGTH) & (tgt_len <= MAX_LENGTH)


def checkpoint_iterations(run_dir, epoch):
    """The optimizer step counter saved in an epoch's checkpoint."""
    import keras

    import keras_tfm.models.transformer  # noqa: F401  (registers the layers)
    import keras_tfm.training  # noqa: F401  (registers loss, metrics, schedule)

    model = keras.saving.load_model(
        run_dir / "checkpoints" / f"epoch_{epoch:03d}.keras"
    )
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))
