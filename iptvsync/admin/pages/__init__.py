"""One blueprint per page group: dashboard (Painel), subs (Assinaturas), inbox (Postbacks),
audit (Registro), operators (Operadores)."""
