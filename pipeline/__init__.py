"""Pipeline configuration, definition and runners."""
