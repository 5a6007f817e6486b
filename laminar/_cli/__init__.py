"""The pieces of the `laminar` command (laminar/cli.py builds the parser and runs them).

_exits: exit codes and the error that carries one; _reach: finding a node that answers, fast;
_output: tables and JSON; _values: values from the command line, stdin or a file; _data: the
commands that talk to a cluster; _supervise: `laminar node` start-up and `laminar cluster run`;
_completion: shell completion scripts generated from the parser.
"""
