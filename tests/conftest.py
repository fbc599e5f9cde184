"""Suite-wide set-up: Triton runs in its CPU interpreter wherever no CUDA GPU is present.

The variable must be set before anything imports triton, which is why it lives at the top of the
root conftest rather than in a fixture.
"""

import os
import shutil

if shutil.which("nvidia-smi") is None and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
