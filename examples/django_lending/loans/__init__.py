"""Borrowers, loans and their payment links."""
