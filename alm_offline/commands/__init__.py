"""The ``alm`` commands, a module per command or command group (the CLI layer, above
tools): each parses its arguments and calls one library function; ``cli.py`` is the Click
group that adds them and shows errors."""
