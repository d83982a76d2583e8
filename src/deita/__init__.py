"""deita: automatic data selection for instruction tuning (Liu et al., ICLR 2024)."""

__version__ = "0.1.0"
