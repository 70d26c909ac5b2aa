"""Data sets: the offline training corpus built from what the package registries carry."""
