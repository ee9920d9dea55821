"""The command line's families of commands (evaluate, set up, research), each a module of thin click
commands: options, one call into the library, and an echo of what the result renders. ``cli.py``
loads a family only when one of its commands runs."""
