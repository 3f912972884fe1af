"""`python -m alert_receiver`: the Alertmanager webhook receiver as a process of its own (what a deployment runs
beside the workers); `starter.py alert-receiver` is the same command."""

from alert_receiver.command import main
from client.exits import exit_process

exit_process(main())
