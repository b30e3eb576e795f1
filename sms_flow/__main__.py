"""``python -m sms_flow`` runs the ``sms-flow`` command line."""

import sys

from sms_flow.cli import main

sys.exit(main())
