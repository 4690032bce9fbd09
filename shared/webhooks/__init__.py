"""Signed webhooks: endpoints, the SSRF guard, signing, delivery with retries."""
