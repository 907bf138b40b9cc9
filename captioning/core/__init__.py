"""The bottom layer: atomic file writing, the component registry and process-level runtime settings."""
