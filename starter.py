"""Start, steer and inspect experiments: `python starter.py --help`."""

from cli.main import main
from client.exits import exit_process

if __name__ == "__main__":
    exit_process(main())
