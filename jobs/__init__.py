"""The job engine and Google ingestion of crm-pipeline."""
