"""The ledger: one SQLite file that is the truth (``db``), its schema (``migrations``), the work
queues' shared statuses and claims (``queue``), and the tables with logic of their own: ``inbox``
(stored postbacks), ``outbox`` (queued emails) and ``audit`` (the hash-chained trail)."""
