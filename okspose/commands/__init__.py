"""What each CLI command does, end to end (floor 4: imports anything below, nothing imports it but cli.py)."""
