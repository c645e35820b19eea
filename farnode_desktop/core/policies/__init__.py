"""When the node contributes: the pure policy rules (games, idle, temperature, schedule), their runner, and the OS-specific inputs (platform/)."""
