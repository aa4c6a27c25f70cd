"""The ModelRepo module: shipped models seeded into the model volume, every version validated."""
