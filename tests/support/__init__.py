"""Helpers shared by tests and benchmarks (never the other way round: tests import no bench)."""
