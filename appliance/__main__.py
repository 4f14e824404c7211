"""`python -m appliance` is the `smartswitch` command."""

import sys

from appliance.cli import main

sys.exit(main())
