"""The CLI's commands, grouped by what they act on; ``cli.py`` assembles them."""
