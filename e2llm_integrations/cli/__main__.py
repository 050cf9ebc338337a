"""``python -m e2llm_integrations.cli ...`` (as under ``torchrun`` or ``accelerate launch``)."""

import sys

from . import main

sys.exit(main())
