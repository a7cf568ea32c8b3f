"""Benchmarks of lmeformula against lme4 and other engines (``python -m benchmarks``)."""
