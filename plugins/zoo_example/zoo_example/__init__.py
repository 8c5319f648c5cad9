"""An example zoo plugin: registers the `example_strided` attention kernel, the `example_sincos`
decoder and the `example_sincos_tiny` model.

Importing this package does not register anything; zoo imports `zoo_example.components`
through the `zoo.plugins` entry point when a tool starts.
"""

import os

GIN_DIR = os.path.join(os.path.dirname(__file__), "gin")
