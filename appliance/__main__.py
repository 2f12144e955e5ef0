"""`python -m appliance` runs the node's command line."""

import sys

from appliance.cli import main

sys.exit(main())
