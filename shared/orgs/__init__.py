"""Organizations and what they own: plan and policy, projects, partners, documents, demo data."""
