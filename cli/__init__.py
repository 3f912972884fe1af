"""The command line behind starter.py: argument parsing, exit codes and what people read."""
