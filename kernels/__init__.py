"""Triton kernels, each beside its plain-PyTorch reference and an autograd wrapper."""
