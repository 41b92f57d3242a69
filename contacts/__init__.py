"""The contacts app of crm-pipeline."""
