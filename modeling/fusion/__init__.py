"""Fusion heads: DeMo's PIFE, HDM and ATM (`demo`), and the SDTPS head (`sdtps`)."""

from .demo import ATM, HDM, PIFE
from .sdtps import MultiModalSDTPS, TokenAggregation, TokenSparse

__all__ = ["ATM", "HDM", "PIFE", "MultiModalSDTPS", "TokenAggregation", "TokenSparse"]
