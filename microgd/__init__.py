"""microgd: a small, fast, exact scalar autograd engine for learning, teaching and checking backprop."""

from . import compiled, fused
from .engine import DomainError, RuleError, Value, grad, gradients, is_recording, no_grad
from .explain import explain
from .rules import define_op
from .tape import trace

__all__ = ["Value", "DomainError", "RuleError", "grad", "gradients", "no_grad", "is_recording", "define_op", "explain",
           "trace"]
__version__ = "0.2.0"

compiled.install()  # backward with the rules compiled: the engine's results, faster
fused.install()  # tape.fused(): a tape's layers as matrix products
