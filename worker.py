"""Run a worker: `python worker.py --help`."""

from cli.exits import exit_process
from cli.worker import main

if __name__ == "__main__":
    exit_process(main())
