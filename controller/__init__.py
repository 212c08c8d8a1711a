"""chronoraft controller: Raft node, leader loop, REST API, ControllerService, CLI."""
