"""robench: adversarial-robustness benchmark suite for skeleton-based human action recognition."""

from robench.errors import RobenchError

__version__ = "0.1.0"

__all__ = ["RobenchError", "__version__"]
