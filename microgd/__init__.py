"""microgd: a small, fast, exact scalar autograd engine for learning, teaching and checking backprop."""

from .engine import DomainError, Value, grad, gradients, is_recording, no_grad

__all__ = ["Value", "DomainError", "grad", "gradients", "no_grad", "is_recording"]
__version__ = "0.1.0"
