"""Run a worker: `python worker.py --help`."""

from client.exits import exit_process
from workers.main import main

if __name__ == "__main__":
    exit_process(main())
