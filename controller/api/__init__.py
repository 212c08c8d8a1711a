"""REST API served by every controller. Handlers are thin: validate, call a repository, serialize."""
