"""edgecls: image folders to a fast, small int8 classifier for edge devices.

Importing the package must stay cheap: TensorFlow is only imported through ``edgecls.tf``.
"""

__version__ = "0.1.0"
