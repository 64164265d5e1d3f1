"""Analyses: tensors and numbers in, numbers and arrays out; no I/O, no global state."""
