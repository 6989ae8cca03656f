"""Whole workflows driven through the platform API, as a user would: ``kfbox example``."""
