"""``python -m langchain_pad.cli``: the ``langchain-pad`` command."""

import sys

from langchain_pad.cli import main

sys.exit(main())
