"""A pruned copy of a run's model in memory: wrap, fine-tune with the sparsity schedule, strip.

``edgecls prune`` writes exports/pruned.keras; the optimize search needs several levels side by
side without touching that file, so it fine-tunes here and keeps the result in memory.
"""

from __future__ import annotations

from edgecls.compression.pruning import overall_sparsity, prunable_model, sparsity
from edgecls.tf import keras


def pruned_model(ctx, target: float, *, epochs: int = 1, lr: float = 1e-4, batch_size: int | None = None):
    """(stripped pruned model, its achieved sparsity) after ``epochs`` of fine-tuning on train."""
    from edgecls.training.pipeline import make_dataset, steps_per_epoch

    config = ctx.config
    batch = batch_size or config.train.batch_size
    steps = steps_per_epoch(len(ctx.data.train.labels), batch)
    model = prunable_model(ctx.model, target, steps * epochs)
    train = make_dataset(ctx.data.train.images, ctx.data.train.labels, len(ctx.labels), batch, training=True,
                         augment=config.augment, seed=config.train.seed)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    model.fit(train, epochs=epochs, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    stripped = sparsity.strip_pruning(model)
    return _reloaded(stripped), overall_sparsity(stripped)


def _reloaded(model):
    # strip_pruning's clone keeps the layers' nodes of the wrapped graph, so taking a sub-graph
    # (the logits, for int8) fails as "graph disconnected"; a saved-and-loaded copy is clean.
    import tempfile
    from pathlib import Path

    from edgecls.models.model_files import load_keras_model

    with tempfile.TemporaryDirectory(prefix="edgecls-pruned-") as folder:
        path = Path(folder) / "pruned.keras"
        model.save(path)
        return load_keras_model(path)
