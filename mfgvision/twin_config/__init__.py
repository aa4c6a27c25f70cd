"""The twin configuration tool: edit module twins (per-camera settings) safely, from a browser."""
