"""The plumbing every domain stands on: configuration, database, clock, errors, dates, addresses, rate limits, HTTP headers."""
