"""``process``: apply the inbox to the ledger, sweep expiries, sync panels, send mail (in that order)."""
