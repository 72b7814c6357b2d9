"""Everything about Monetizze's side: the postback (``postback``: parse, classify; ``redact``), its
form encoding both ways (``form``), the transactions API (``api``) and ``simulate``."""
