"""A small lending app (Flask + sqlite3) wired with freshlink; see README.md."""
