"""Third-party command-line tools (helm, kubectl) fetched on demand into a per-user cache."""
