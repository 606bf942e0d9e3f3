import sys

from qwen3core.cli import main

sys.exit(main())
