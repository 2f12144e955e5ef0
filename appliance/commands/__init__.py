"""Appliance commands: a catalog of Python-implemented commands and a runner; never a shell."""
