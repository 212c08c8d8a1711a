"""``chronoraft jobs|runs|dags|cluster``: the REST API from a terminal (tables or ``--json``)."""
