"""Edge storage: the inference database and the image files."""
