"""`keras_tfm.models.legacy`: a model.keras written by release 0.1.0."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
from support.paths import FIXTURES
from support.processes import child_env


def test_model_saved_by_release_0_1_0_loads_and_decodes_the_same(tmp_path):
    """A run's model.keras as keras_tfm 0.1.0 wrote it (a plain functional
    model with its compiled optimizer), loaded after `import keras_tfm` in a
    fresh process: its logits and greedy tokens equal those 0.1.0 computed."""
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        import keras_tfm
        from keras_tfm.models.legacy import upgrade_model
        saved = keras.models.load_model(
            {str(FIXTURES / "keras_tfm_0.1.0_model.keras")!r}
        )
        data = np.load({str(FIXTURES / "keras_tfm_0.1.0_model.npz")!r})
        model = upgrade_model(saved)
        assert type(model) is keras_tfm.Transformer
        logits = model({{"source": data["source"], "target": data["target"]}})
        tokens, scores = model.generate(
            data["source"], keras_tfm.DecodingOptions("greedy", max_length=8)
        )
        np.savez(
            {str(tmp_path / "out.npz")!r},
            iterations=int(saved.optimizer.iterations.numpy()),
            optimizer=type(saved.optimizer).__name__,
            logits=keras.ops.convert_to_numpy(logits),
            tokens=keras.ops.convert_to_numpy(tokens),
            scores=keras.ops.convert_to_numpy(scores),
        )
        """
    )
    env = child_env(backend=keras.config.backend())
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    out = np.load(tmp_path / "out.npz")
    expected = np.load(FIXTURES / "keras_tfm_0.1.0_model.npz")
    assert int(out["iterations"]) == int(expected["iterations"]) == 2
    assert str(out["optimizer"]) == "Adam"
    np.testing.assert_allclose(out["logits"], expected["logits"], atol=1e-6)
    np.testing.assert_array_equal(out["tokens"], expected["greedy_tokens"])
    np.testing.assert_allclose(out["scores"], expected["greedy_scores"], atol=1e-5)
