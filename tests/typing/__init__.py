"""Type-checked, never run: the public API used as the README uses it (``api.py``)."""
