"""Datasets: the LMDB schema, the dataset build, and torch Dataset classes."""
