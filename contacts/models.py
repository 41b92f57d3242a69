"""Contacts and their identities (arrive with the contact-resolution capability)."""
