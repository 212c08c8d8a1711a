"""Leader-only subsystems: started together when leadership is gained, cancelled when lost."""
