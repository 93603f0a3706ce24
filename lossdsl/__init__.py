"""lossdsl: a declarative language for loss functions, compiled to PyTorch and JAX with
gradients generated symbolically."""

__version__ = "0.1.0"

from lossdsl.api import Spec, load, load_all, parse
from lossdsl.errors import (
    ArityError,
    BackendError,
    CallError,
    ElementTypeError,
    LimitError,
    LossDSLError,
    ParamError,
    ParseError,
    ResolveError,
    ShapeError,
    SourceError,
    Span,
)

__all__ = [
    "ArityError",
    "BackendError",
    "CallError",
    "ElementTypeError",
    "LimitError",
    "LossDSLError",
    "ParamError",
    "ParseError",
    "ResolveError",
    "ShapeError",
    "SourceError",
    "Span",
    "Spec",
    "__version__",
    "load",
    "load_all",
    "parse",
]
