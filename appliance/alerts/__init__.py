"""Saved queries with alert thresholds: the rules (rules.py) and housekeeping's evaluator (runner.py)."""
