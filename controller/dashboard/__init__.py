"""The web dashboard: static files served by every controller, reading the same REST API."""
