"""``edgecls demo``: the whole pipeline offline, on scikit-learn's bundled handwritten digits."""

from __future__ import annotations

from pathlib import Path

from edgecls.config import from_dict, load_yaml

DEMO_RECIPE = "demo_digits"


def run_demo(out, *, epochs: int = 10, force: bool = False, verbose: int = 1):
    from edgecls.data.decode import default_cache_root
    from edgecls.data.demo_digits import write_digits_dataset
    from edgecls.train.trainer import train

    data_dir = write_digits_dataset(default_cache_root() / "datasets" / "digits")
    config = from_dict(load_yaml(DEMO_RECIPE), source=DEMO_RECIPE)
    config.data.path = str(data_dir)
    config.train.epochs = epochs
    if verbose:
        print(f"demo: 1,797 handwritten digits (scikit-learn, offline) in {data_dir}")
    return train(config, Path(out), force=force, verbose=verbose)
