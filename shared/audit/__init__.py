"""The audit log: recording, reading with filters, and exporting."""
