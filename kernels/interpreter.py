"""Whether Triton runs the kernels in its CPU interpreter (TRITON_INTERPRET=1) instead of compiling them:
the one place that reads the variable, for the launch guards, the autotune lists and the interpreter's
workarounds."""

import os


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"
