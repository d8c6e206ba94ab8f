"""rescue: disaster recovery for Linux servers, on top of duplicity."""

__version__ = "0.1.0"
