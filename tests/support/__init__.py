"""Helpers the tests share: a throwaway PostgreSQL server, free ports, readiness polling."""
