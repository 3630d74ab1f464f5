"""A small lending app (FastAPI + SQLAlchemy) wired with freshlink; see README.md."""
