"""A small lending site (Django ORM + SQLite) wired with freshlink; see README.md."""
