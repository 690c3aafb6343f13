"""memberbot: a brand's membership programme inside WeChat."""

__version__ = "0.1.0"
