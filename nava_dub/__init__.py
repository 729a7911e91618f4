"""nava-dub."""
__version__ = "0.1.0"
