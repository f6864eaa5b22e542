"""Model builders: ``build_model(spec) -> nn.Module``."""

from escale.models.eseg import ESeg, build_model

__all__ = ["ESeg", "build_model"]
