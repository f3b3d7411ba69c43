"""Use cases: one function per job, called by every front end."""
