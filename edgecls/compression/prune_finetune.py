"""A pruned copy of a run's model in memory: wrap, fine-tune with the sparsity schedule, strip.

``edgecls prune`` writes exports/pruned.keras; the optimize search needs several levels side by
side without touching that file, so it fine-tunes here and keeps the result in memory.
"""

from __future__ import annotations

from edgecls.compression.pruning import fine_tuned_pruning, overall_sparsity, sparsity
from edgecls.training.fine_tune import DEFAULT_OPTIMIZER


def pruned_model(ctx, target: float, *, epochs: int = 1, lr: float | None = None, batch_size: int | None = None,
                 optimizer: str = DEFAULT_OPTIMIZER):
    """(stripped pruned model, its achieved sparsity, how it was fine-tuned) after ``epochs`` on train."""
    model, tuning = fine_tuned_pruning(ctx, target, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer)
    stripped = sparsity.strip_pruning(model)
    return _reloaded(stripped), overall_sparsity(stripped), tuning


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
