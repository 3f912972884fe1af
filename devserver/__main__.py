"""`python -m devserver`: the Temporal dev server with its Web UI, in the foreground."""

import sys

from devserver import main

sys.exit(main())
