"""Code shared by controllers and workers: settings, database, pure scheduling logic."""
