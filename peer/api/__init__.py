"""The peer's HTTP API documents, shared by the daemon, the lab's live server and the lab's output files."""
