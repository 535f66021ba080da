"""Readers for the field's data formats, one module each (``robench data import FORMAT PATH``)."""
