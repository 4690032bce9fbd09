"""API tokens: format, rights, access, lifecycle, the API's hot path, usage, insight, incident tools and their pages."""
