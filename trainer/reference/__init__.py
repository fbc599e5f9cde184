"""Plain-PyTorch reference ops: the CPU path and the ground truth the Triton kernels are checked against."""
