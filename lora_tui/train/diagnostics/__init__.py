"""`lora-tui doctor`: the machine and project pre-flight checks."""
