"""Notifications for offline users: ``python -m notifier``."""
