"""Lookahead weight averaging: every few steps the weights move to an average of their recent past.

Short, high-learning-rate runs (the CIFAR-10 speed recipes) end on weights that still jump from
step to step; averaging them smooths that out (airbench uses it; in edgecls' CIFAR-10 trials it
came together with other changes, so its own gain is not measured: trials_whitened_cnn.md). The
form is airbench's: every ``every`` steps a slow copy moves towards the trained weights, and the trained weights
are set to the slow copy. The averaging strength ramps up with the cube of the run's progress, so
the early, fast-changing weights are not held back, and reaches ``step_decay ** every`` at the end.
BatchNorm's moving statistics are averaged with the weights, so they keep matching them.
"""

from __future__ import annotations

from edgecls.tf import keras, tf

STEP_DECAY = 0.95


class Lookahead(keras.callbacks.Callback):
    """Keras callback; ``total_steps`` is the length of the run it ramps over (the schedule's).

    After a ``--resume`` the slow copy starts again from the checkpoint's weights, which are at
    most ``every - 1`` steps away from it, so a resumed run loses almost nothing.
    """

    def __init__(self, every: int, total_steps: int, step_decay: float = STEP_DECAY):
        super().__init__()
        if every < 1:
            raise ValueError(f"lookahead needs every >= 1, got {every}")
        self.every = int(every)
        self.total_steps = max(1, int(total_steps))
        self.decay = float(step_decay) ** self.every
        self._slow = None

    def on_train_begin(self, logs=None):
        self._fast = [w for w in self.model.weights if w.dtype.is_floating]
        self._slow = [tf.Variable(tf.identity(w), trainable=False) for w in self._fast]
        # Read once (restored with the optimizer on --resume), then counted here: one step per batch.
        self._step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        step = self._step
        if step % self.every == 0:
            progress = min(1.0, step / self.total_steps)
            self._sync(tf.constant(self.decay * progress ** 3, tf.float32))

    @tf.function
    def _sync(self, decay):
        for slow, fast in zip(self._slow, self._fast):
            slow.assign(slow + (1.0 - decay) * (tf.cast(fast, slow.dtype) - slow))
            fast.assign(slow)
