"""Configuration: the catalog (what PayFlow runs), metrics templates, process settings."""
