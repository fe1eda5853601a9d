import sys

from vmc.cli import main

sys.exit(main())
