"""Datasets: image decoding, safe archive extraction, folder layouts, splits and the decode cache.

Nothing is imported here so that ``import edgecls.data.images`` (used on the device path)
stays as light as the module itself; import the submodule you need.
"""
