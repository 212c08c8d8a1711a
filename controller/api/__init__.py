"""REST API served by every controller: thin handlers over the repositories."""
