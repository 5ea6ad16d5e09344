"""Developer tools that are not part of the app (mutation testing)."""
