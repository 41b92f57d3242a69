"""Gmail and Calendar sync: the services behind gmail_sync, calendar_sync and the imports."""
