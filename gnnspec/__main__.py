import sys

from gnnspec.cli import main

sys.exit(main())
