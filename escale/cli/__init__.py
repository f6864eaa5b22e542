"""Thin command-line layer: parses arguments, calls the library, renders results. Nothing imports it."""
