"""Analyses: tensors in, numbers and arrays out. No I/O, no global state."""
