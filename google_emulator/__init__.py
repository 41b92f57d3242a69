"""Local emulator of the Gmail v1 and Calendar v3 APIs, fed from mail and iCalendar files."""
