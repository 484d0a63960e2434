"""tenant-dr step library: one module per component, run as ``python -m steps.<component>``."""
