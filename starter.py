"""Start, steer and inspect experiments: `python starter.py --help`."""

from cli.exits import exit_process
from cli.main import main

if __name__ == "__main__":
    exit_process(main())
