"""The timeline app of crm-pipeline."""
