"""Read-only web dashboard over the edge database and image folder."""
