"""Integrations with other training libraries (TRL); each needs its extra installed."""
