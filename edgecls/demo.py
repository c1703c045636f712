"""``edgecls demo``: the whole pipeline offline, on scikit-learn's bundled handwritten digits."""

from __future__ import annotations

import sys
from pathlib import Path

DEMO_RECIPE = "demo_digits"


def run_demo(out, *, epochs: int = 10, force: bool = False, verbose: int = 1):
    """Write the digits as class folders into the cache and train the demo recipe on them; a TrainResult."""
    from edgecls.api import train
    from edgecls.data.decode import default_cache_root
    from edgecls.data.demo_digits import write_digits_dataset

    data_dir = write_digits_dataset(default_cache_root() / "datasets" / "digits")
    if verbose:
        print(f"demo: 1,797 handwritten digits (scikit-learn, offline) in {data_dir}", file=sys.stderr)
    return train(data_dir, Path(out), config=DEMO_RECIPE, epochs=epochs, force=force, verbose=verbose)
