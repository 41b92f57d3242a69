"""The standalone Django project that hosts the crm-pipeline apps."""
