"""What the optional quack-kernels paths share: the device check, the dtype they would compute in, and how quack's
own failures are told apart from a caller's mistakes."""

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from gristmill.pipeline.log import get_logger

_Result = TypeVar("_Result")
_log = get_logger(__name__)


def import_quack(uses: str, *names: str) -> tuple[list[Any] | None, str | None]:
    """The objects `names` ("module:attribute") name, and None; or None and why one of them cannot be imported (not
    installed, or its CUDA libraries fail: any import failure means "take the other path"). Logs `uses` once they
    are all in."""
    try:
        found = [getattr(importlib.import_module(module), attribute)
                 for module, attribute in (name.split(":") for name in names)]
    except Exception as error:
        return None, f"{type(error).__name__}: {error}"
    _log.info(uses)
    return found, None


class QuackFailed(RuntimeError):
    """quack raised (a broken or mismatched install, typically in its first compile); the run can go on without it."""


def hopper_reason(x: torch.Tensor, *, exactly: bool = False) -> str | None:
    """None when x is on a Hopper GPU (or newer, unless `exactly`), else why quack cannot run there."""
    if not x.is_cuda:
        return f"{x.device} tensors; quack's kernels need CUDA"
    capability = torch.cuda.get_device_capability(x.device)
    if capability < (9, 0) or (exactly and capability != (9, 0)):
        wanted = "exactly 9.0 (Hopper)" if exactly else "9.0 (Hopper) or newer"
        return f"quack's kernels here need compute capability {wanted}, this GPU has {capability[0]}.{capability[1]}"
    return None


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on x computes in: autocast's where it is on, else x's own."""
    return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype


def half_precision_hopper_reason(x: torch.Tensor, what: str) -> str | None:
    """None when x is on a Hopper (or newer) GPU and a matmul on it computes in bf16 or fp16, else why quack's `what`
    cannot run it."""
    device = hopper_reason(x)
    if device is not None:
        return device
    dtype = compute_dtype(x)
    if dtype not in (torch.bfloat16, torch.float16):
        return f"{what} runs in bf16 or fp16, not {dtype}"
    return None


def describe_failure(error: BaseException) -> str:
    """One line naming quack's error, for the warning and for every later refusal."""
    first_line = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first_line}"


class FailureRecord:
    """quack's first failure on one path of this process (the MLP, the loss): from then on that path's availability
    check names it, so the run stays on the path's fallback."""

    def __init__(self, raises: type[QuackFailed]) -> None:
        self.raises = raises
        self.reason: str | None = None

    def earlier(self) -> str | None:
        """Why quack is off for this path, once it has failed here."""
        return None if self.reason is None else f"quack failed earlier in this run: {self.reason}"

    def call(self, fn: Callable[..., _Result], *args: object) -> _Result:
        """fn(*args); quack's own exception (compile, cache key, library) is recorded and raised as `raises`. Running
        out of memory is the batch's size, not quack's failure, and passes through unrecorded."""
        try:
            return fn(*args)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as error:
            self.reason = describe_failure(error)
            raise self.raises(self.reason) from error
