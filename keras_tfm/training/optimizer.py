"""Adam with TensorFlow's fused update kernel, on the paper's schedule."""

import keras

from keras_tfm.training.schedule import TransformerSchedule


@keras.saving.register_keras_serializable(package="keras_tfm")
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam`, updating each variable with one fused kernel.

    Keras' TensorFlow Adam writes the update of every variable as about
    twenty small ops (the two moments, the bias corrections, the step), and
    recomputes the bias corrections for each variable. This one computes
    the step's scalars once and hands each variable to TensorFlow's
    `ResourceApplyAdam` kernel, which does the same arithmetic in one pass:

        alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
        w -= alpha * m / (sqrt(v) + epsilon)

    Everything else is Keras' (arguments, clipping, weight decay, gradient
    accumulation, loss scaling, `tf.distribute`, saving); with `amsgrad`
    the update is Keras' own. An embedding's `IndexedSlices` gradient is
    summed per row before the update, so a row used twice in a batch gets
    the square of its summed gradient in `v`, as Adam defines it (Keras'
    update squares the two slices separately and adds the squares). It
    makes the training step faster on the CPU (`benchmarks/README.md`).

    Under another Keras backend (a model saved by `keras-tfm train` loaded
    under JAX, say) the update is Keras' own too.
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The scalars of this step, per (dtype, device), shared by the
        # variables' updates.
        fused = keras.backend.backend() == "tensorflow"
        self._step_scalars = {} if fused else None
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars = None

    def update_step(self, gradient, variable, learning_rate):
        scalars = getattr(self, "_step_scalars", None)
        if scalars is None or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        key = (dtype, variable.device)
        if key not in scalars:
            step = tf.cast(self.iterations + 1, dtype)
            beta_1 = tf.cast(self.beta_1, dtype)
            beta_2 = tf.cast(self.beta_2, dtype)
            scalars[key] = {
                "beta1_power": tf.pow(beta_1, step),
                "beta2_power": tf.pow(beta_2, step),
                "lr": tf.cast(learning_rate, dtype),
                "beta1": beta_1,
                "beta2": beta_2,
                "epsilon": tf.cast(self.epsilon, dtype),
            }
        # An embedding's gradient arrives as IndexedSlices; Keras' update
        # makes it dense too (every row's moments decay at every step).
        gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=momentum.value.handle,
            v=velocity.value.handle,
            grad=gradient,
            **scalars[key],
        )


def make_optimizer(
    d_model,
    warmup_steps=4000,
    scale=1.0,
    clipnorm=None,
    total_steps=None,
    cooldown_steps=0,
):
    """Adam(beta_1=0.9, beta_2=0.98, epsilon=1e-9) on the paper's schedule
    (with the optional linear cooldown of `TransformerSchedule`)."""
    return Adam(
        learning_rate=TransformerSchedule(
            d_model, warmup_steps, scale, total_steps, cooldown_steps
        ),
        beta_1=0.9,
        beta_2=0.98,
        epsilon=1e-9,
        clipnorm=clipnorm,
    )
