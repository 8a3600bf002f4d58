"""Markdown reports assembled from figures and tables (no computation here)."""
