"""tenant-dr orchestration: Hera definitions compiled to Argo packages (never imports step logic)."""
