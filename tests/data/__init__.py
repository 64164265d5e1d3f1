"""Tests of wiringlab.data (a package, so its conftest does not shadow tests/conftest.py)."""
