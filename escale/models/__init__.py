"""Model builders: ``build_model(spec) -> nn.Module``."""

from escale.models.eseg import ESeg, build_model
from escale.models.meta import meta_init

__all__ = ["ESeg", "build_model", "meta_init"]
