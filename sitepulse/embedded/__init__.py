"""Real servers started as child processes when no external URL is configured."""
