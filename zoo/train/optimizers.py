"""Optimizers and learning-rate schedules, registered under OPTIMIZERS and SCHEDULES.

    opt = OPTIMIZERS.create("adafactor", learning_rate=SCHEDULES.create(
        "warmup_exponential_decay", peak=4.5e-5, warmup_steps=5000, decay_start=85000))

`adafactor` is Parti's optimizer: Adafactor (Shazeer & Stern 2018) with first-moment momentum
(beta1 0.9), a constant second-moment decay (beta2 0.96) and decoupled weight decay (4.5e-2).
Keras's own `Adafactor` has no beta1 and a step-dependent beta2, hence this variant.
"""

import keras
import tensorflow as tf
from keras import ops

from zoo.errors import ZooError
from zoo.registry import OPTIMIZERS, SCHEDULES


@OPTIMIZERS.register("adafactor")
@keras.saving.register_keras_serializable(package="zoo")
class Adafactor(keras.optimizers.Optimizer):
    """Adafactor with momentum and decoupled weight decay (Parti's settings by default).

    For a weight of rank >= 2 the second moment is factored over its last two dimensions: a
    row statistic (last dimension reduced) and a column statistic (second-last reduced),
    created in that order; smaller weights keep a full second moment. The update is
    g / sqrt(v_hat), clipped to RMS <= `clip_threshold`, then averaged with momentum `beta_1`
    (a full-size first moment; `beta_1=0` drops it). Both moments are bias-corrected.
    Weight decay is decoupled, w -= learning_rate * weight_decay * w (Keras's convention), and
    applies to weights of rank >= 2 (not to biases and LayerNorm parameters).

    Args:
        learning_rate: float or schedule (Parti: 4.5e-5 with warm-up and decay).
        beta_1: float. First-moment decay (Parti: 0.9); 0 disables momentum.
        beta_2: float. Second-moment decay (Parti: 0.96).
        epsilon_1: float. Added to squared gradients.
        clip_threshold: float. Update clipping threshold on the update's RMS.
        multiply_by_parameter_scale: bool. Scale updates by max(epsilon_2, RMS(w)).
        epsilon_2: float. Lower bound of the parameter scale.
        weight_decay: float. Decoupled weight decay (Parti: 4.5e-2).
        name: str.
        **kwargs: other `keras.optimizers.Optimizer` arguments (e.g. global_clipnorm).
    """

    def __init__(self, learning_rate=4.5e-5, beta_1=0.9, beta_2=0.96, epsilon_1=1e-30,
                 clip_threshold=1.0, multiply_by_parameter_scale=False, epsilon_2=1e-3,
                 weight_decay=4.5e-2, name="adafactor", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay or None,
                         name=name, **kwargs)
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= float(value) < 1.0:
                raise ZooError(f"adafactor.{arg} must be in [0, 1), got {value!r}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon_1 = float(epsilon_1)
        self.clip_threshold = float(clip_threshold)
        self.multiply_by_parameter_scale = bool(multiply_by_parameter_scale)
        self.epsilon_2 = float(epsilon_2)

    def build(self, var_list):
        if self.built:
            return
        # Decay matrices only: biases and LayerNorm scales keep their values.
        self.exclude_from_weight_decay(var_list=[v for v in var_list if len(v.shape) < 2])
        super().build(var_list)
        self._row, self._col, self._v, self._m = [], [], [], []
        for var in var_list:
            shape = tuple(var.shape)
            if len(shape) >= 2:
                self._row.append(self.add_variable(
                    shape=shape[:-1], dtype=var.dtype, initializer="zeros",
                    name=f"{var.name}_row"))
                self._col.append(self.add_variable(
                    shape=shape[:-2] + shape[-1:], dtype=var.dtype, initializer="zeros",
                    name=f"{var.name}_col"))
                self._v.append(None)
            else:
                self._row.append(None)
                self._col.append(None)
                self._v.append(self.add_variable_from_reference(var, name="second_moment"))
            self._m.append(self.add_variable_from_reference(var, name="momentum")
                           if self.beta_1 > 0 else None)

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        if isinstance(gradient, tf.IndexedSlices):  # embeddings: factored moments need dense
            gradient = tf.convert_to_tensor(gradient)
        g = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)
        correction_2 = 1.0 - ops.power(beta_2, step)
        g2 = ops.square(g) + self.epsilon_1
        if self._v[i] is None:
            row, col = self._row[i], self._col[i]
            self.assign(row, beta_2 * row + (1.0 - beta_2) * ops.mean(g2, axis=-1))
            self.assign(col, beta_2 * col + (1.0 - beta_2) * ops.mean(g2, axis=-2))
            row_share = row / ops.mean(row, axis=-1, keepdims=True)
            v_hat = ops.expand_dims(row_share, -1) * ops.expand_dims(col, -2) / correction_2
        else:
            v = self._v[i]
            self.assign(v, beta_2 * v + (1.0 - beta_2) * g2)
            v_hat = v / correction_2
        update = g / ops.sqrt(v_hat)
        rms = ops.sqrt(ops.mean(ops.square(update)))
        update = update / ops.maximum(1.0, rms / self.clip_threshold)
        if self._m[i] is not None:
            m = self._m[i]
            beta_1 = ops.cast(self.beta_1, dtype)
            self.assign(m, beta_1 * m + (1.0 - beta_1) * update)
            update = m / (1.0 - ops.power(beta_1, step))
        if self.multiply_by_parameter_scale:
            scale = ops.maximum(self.epsilon_2, ops.sqrt(ops.mean(ops.square(variable))))
            update = update * scale
        self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2,
                       "epsilon_1": self.epsilon_1, "clip_threshold": self.clip_threshold,
                       "multiply_by_parameter_scale": self.multiply_by_parameter_scale,
                       "epsilon_2": self.epsilon_2})
        return config


@SCHEDULES.register("warmup_exponential_decay")
@keras.saving.register_keras_serializable(package="zoo")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, constant, then exponential decay (Parti's schedule).

    lr(s) = peak * (s + 1) / warmup_steps                          for s < warmup_steps
          = peak                                                  until decay_start
          = max(end, peak * decay_rate ** ((s - decay_start) / decay_steps))   after

    Parti: peak 4.5e-5, 5000 warm-up steps, exponential decay from step 85k (the paper gives
    no rate; the default halves the rate every 100k steps).

    Args:
        peak: float. warmup_steps: int. decay_start: int. decay_rate: float in (0, 1].
        decay_steps: int. end: float. Lower bound of the rate.
    """

    def __init__(self, peak=4.5e-5, warmup_steps=5000, decay_start=85000, decay_rate=0.5,
                 decay_steps=100000, end=0.0):
        if not peak > 0:
            raise ZooError(f"warmup_exponential_decay.peak must be > 0, got {peak!r}")
        if not 0 < decay_rate <= 1:
            raise ZooError(f"warmup_exponential_decay.decay_rate must be in (0, 1], got "
                           f"{decay_rate!r}")
        if int(decay_steps) <= 0 or int(warmup_steps) < 0:
            raise ZooError("warmup_exponential_decay: decay_steps must be > 0 and "
                           "warmup_steps >= 0")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.decay_start = int(decay_start)
        self.decay_rate = float(decay_rate)
        self.decay_steps = int(decay_steps)
        self.end = float(end)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = ops.minimum(1.0, (step + 1.0) / float(max(self.warmup_steps, 1)))
        decay_from = float(max(self.decay_start, self.warmup_steps))
        exponent = ops.maximum(step - decay_from, 0.0) / float(self.decay_steps)
        decayed = ops.maximum(self.end, self.peak * ops.power(self.decay_rate, exponent))
        return ops.where(step < self.warmup_steps, self.peak * warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "decay_start": self.decay_start, "decay_rate": self.decay_rate,
                "decay_steps": self.decay_steps, "end": self.end}
