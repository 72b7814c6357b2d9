"""Buyer emails: render (templates), message (RFC 5322), backends (maildir, SMTP)."""
